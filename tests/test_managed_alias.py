"""The managed ``Host mk-NAME`` alias connects exactly as the user's host does.

Every case runs the real ``ssh -G``: the block is derived from ``ssh -G HOST`` of a
config, written into that config, and then ``ssh -G mk-NAME`` must agree with
``ssh -G HOST`` on every option that decides the connection, while ``ssh -G`` of every
OTHER host of the file stays what it was (the block does not leak). Configs name only
absolute paths, so ssh's home (from the password database) plays no part.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkdoctor.openssh import client_config as cc
from mkdoctor.openssh.keys import local_runner
from mkdoctor.options import UsageError

RUN = local_runner(10)
ALIAS = "mk-ws"
KEY = "/tmp/mkd-test-keys/id_ed25519_mk-ws"
# What decides how (and whether) the connection is made, named in the brief and beyond.
DECIDING = ("hostname", "port", "user", "proxycommand", "proxyjump", "hostkeyalias",
            "userknownhostsfile", "globalknownhostsfile", "ciphers", "macs", "kexalgorithms",
            "hostkeyalgorithms", "pubkeyacceptedalgorithms", "casignaturealgorithms",
            "gssapiauthentication", "gssapidelegatecredentials", "addressfamily", "bindaddress",
            "bindinterface", "connecttimeout", "connectionattempts", "identityagent",
            "certificatefile", "proxyusefdpass", "checkhostip", "updatehostkeys",
            "knownhostscommand", "preferredauthentications", "passwordauthentication",
            "pubkeyauthentication", "kbdinteractiveauthentication", "hostbasedauthentication",
            "ipqos", "rekeylimit", "compression", "tcpkeepalive", "verifyhostkeydns",
            "requiredrsasize", "revokedhostkeys", "pkcs11provider", "setenv", "sendenv")


def g(cfg: Path, host: str) -> cc.SshG:
    return cc.read_ssh_g(RUN, host, cfg)


def others(text: str, host: str) -> list[str]:
    return [h for h in cc.host_aliases(text) if h != host] + ["unrelated.example", "mk-other"]


def deciding_mismatches(host_g: cc.SshG, alias_g: cc.SshG, host: str) -> dict:
    """The DECIDING keys on which the two disagree (tokens %n/%k read as each name
    means them), hostname/port/user included."""
    diff = cc.differences(host_g, alias_g, host, ALIAS)
    out = {k: v for k, v in diff.items() if k in DECIDING}
    for key in ("hostname", "port", "user"):
        if host_g.get(key) != alias_g.get(key):
            out[key] = (host_g.get(key), alias_g.get(key))
    return out


def install(tmp_path: Path, text: str, host: str) -> tuple[Path, str, cc.HostBlock]:
    """Write ``text`` as the config, derive and write the block; check the file outside
    the block and ``ssh -G`` of every other host are unchanged. Returns the config,
    the text with the block and the block."""
    cfg = tmp_path / "config"
    cfg.write_text(text)
    before = {h: g(cfg, h) for h in others(text, host)}
    host_before = g(cfg, host)
    block = cc.managed_block(RUN, ALIAS, host, KEY, ssh_config=cfg)
    new = cc.upsert_block(text, block)
    cfg.write_text(new)
    assert cc.remove_block(new, ALIAS) == text  # everything outside, byte for byte
    for h, was in before.items():
        assert g(cfg, h) == was, f"ssh -G {h} changed by the block"
    assert g(cfg, host) == host_before
    return cfg, new, block


def assert_same_connection(cfg: Path, host: str) -> tuple[cc.SshG, cc.SshG]:
    h, m = g(cfg, host), g(cfg, ALIAS)
    assert deciding_mismatches(h, m, host) == {}
    assert cc.differences(h, m, host, ALIAS) == {}
    # what mkdoctor sets on purpose
    assert m["identityfile"][0] == KEY and m["identitiesonly"] == ["yes"]
    assert m["exitonforwardfailure"] == ["yes"] and m["serveraliveinterval"] == ["30"]
    return h, m


CASES = {
    "direct": """\
Host ws
  HostName 192.0.2.10
  Port 2201
  User alice
""",
    "proxycommand": """\
Host wsproxied
  HostName ws.internal.example
  User alice
  ProxyCommand ssh -W %h:%p -l %r bastion.example # for %n, key %k
  GSSAPIAuthentication yes
  GSSAPIDelegateCredentials yes
  Ciphers aes256-gcm@openssh.com,chacha20-poly1305@openssh.com
  HostKeyAlgorithms ssh-ed25519
  AddressFamily inet
""",
    "proxyjump": """\
Host wsjump
  HostName 10.1.2.3
  ProxyJump bob@jump.example:2222,jump2
  HostKeyAlias ws-key
  UserKnownHostsFile /tmp/kh/known_%n /tmp/kh/second
Host jump.example
  User jumper
""",
    "match-host": """\
Host ws
  HostName ws.internal.example
Match host ws.internal.example
  Port 2222
  ConnectTimeout 7
  BindAddress 127.0.0.1
""",
    "match-originalhost": """\
Match originalhost wsorig
  HostName 198.51.100.7
  ProxyCommand nc %h %p
  KexAlgorithms curve25519-sha256
  CheckHostIP yes
Host *
  User everyone
""",
    "match-final": """\
Host wsfinal
  HostName ws.final.example
Match final host ws.final.example
  Port 2022
  Compression yes
  ConnectionAttempts 3
Match final originalhost wsfinal
  PubkeyAcceptedAlgorithms ssh-ed25519
""",
    "match-exec": """\
Match exec "test %n = wsexec"
  HostName 203.0.113.5
  ProxyUseFdpass no
  IPQoS af21 cs1
Host *
  TCPKeepAlive no
""",
    "host-star-reset": """\
Host wsnone
  HostName 192.0.2.20
  ProxyCommand none
  IdentityAgent none
Host *
  ProxyCommand nc -X 5 -x socks.example:1080 %h %p
  SendEnv LANG LC_*
  Compression yes
""",
    "quoting": """\
Host wsq
  HostName 192.0.2.30
  SetEnv "GREETING=it's \\"quoted\\"" PLAIN=1
  IdentityAgent "/tmp/agent dir/it's.sock"
  UserKnownHostsFile /tmp/kh/lit%%eral
  CertificateFile /tmp/certs/one-cert.pub
  CertificateFile "/tmp/certs/two cert.pub"
  RekeyLimit 1G 1h
  PreferredAuthentications publickey,keyboard-interactive
""",
    "session-options-not-carried": """\
Host wss
  HostName 192.0.2.40
  RemoteCommand top
  RequestTTY force
  LocalForward 8080 127.0.0.1:80
  ControlMaster auto
  ControlPath /tmp/cm-%C
  ForwardAgent yes
  StrictHostKeyChecking no
""",
}
HOSTS = {"direct": "ws", "proxycommand": "wsproxied", "proxyjump": "wsjump", "match-host": "ws",
         "match-originalhost": "wsorig", "match-final": "wsfinal", "match-exec": "wsexec",
         "host-star-reset": "wsnone", "quoting": "wsq", "session-options-not-carried": "wss"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_alias_connects_as_the_host(case, tmp_path):
    host = HOSTS[case]
    cfg, text, _ = install(tmp_path, CASES[case], host)
    h, m = assert_same_connection(cfg, host)
    if case == "proxycommand":
        # written as resolved: %h %p %r kept, %n and %k mean the user's host
        assert m["proxycommand"] == ["ssh -W %h:%p -l %r bastion.example # for wsproxied, key wsproxied"]
        assert m["hostname"] == ["ws.internal.example"]
    if case == "match-originalhost":
        # the Match names the original host, which the alias is not: the resolved
        # values are written into the block, so the alias still connects the same way
        assert m["proxycommand"] == ["nc %h %p"] and m["hostname"] == ["198.51.100.7"]
    if case == "host-star-reset":
        assert "proxycommand" not in m and "ProxyCommand none" in text
    if case == "session-options-not-carried":
        block = cc.block_text(text, ALIAS)
        for word in ("RemoteCommand", "RequestTTY", "LocalForward", "ControlMaster",
                     "ForwardAgent", "StrictHostKeyChecking"):
            assert word not in block
        assert "remotecommand" not in m and "localforward" not in m
        assert m["stricthostkeychecking"] != ["false"]  # never written off by mkdoctor


def test_include_file_and_other_hosts_unchanged(tmp_path):
    inc = tmp_path / "config.d"
    inc.mkdir()
    (inc / "work").write_text("Host wsinc\n  HostName 192.0.2.50\n  Port 2200\n  ProxyJump gw\n"
                              "Host gw\n  HostName gw.example\n  User gwuser\n")
    text = f"Include {inc}/*\nHost other\n  HostName other.example\nHost *\n  ServerAliveCountMax 9\n"
    cfg, _, _ = install(tmp_path, text, "wsinc")
    h, m = assert_same_connection(cfg, "wsinc")
    assert m["proxyjump"] == ["gw"] and m["port"] == ["2200"]
    assert g(cfg, "gw")["user"] == ["gwuser"]


def test_the_comparison_fails_for_the_old_block(tmp_path):
    """The fault of the issue, injected: the block of before (HostKeyAlias,
    UserKnownHostsFile and ProxyJump only) loses ProxyCommand, GSSAPI and the algorithms,
    and the comparison says so."""
    host = "wsproxied"
    cfg = tmp_path / "config"
    cfg.write_text(CASES["proxycommand"])
    first = cc.first_values(g(cfg, host))
    old = cc.HostBlock(ALIAS, first["hostname"], first["user"], int(first["port"]), KEY)
    cfg.write_text(cc.upsert_block(CASES["proxycommand"], old))
    bad = deciding_mismatches(g(cfg, host), g(cfg, ALIAS), host)
    assert {"proxycommand", "gssapiauthentication", "ciphers", "addressfamily"} <= set(bad)


def test_unescaped_quote_is_refused_by_ssh_and_quote_word_is_read_back(tmp_path):
    cfg = tmp_path / "config"
    value = "/tmp/it's"
    cfg.write_text(f"Host q\n  IdentityAgent {value}\n")  # the old config_value output
    done = subprocess.run(["ssh", "-F", str(cfg), "-G", "q"], capture_output=True, text=True,
                          timeout=10, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and "quotes" in done.stderr
    cfg.write_text(f"Host q\n  IdentityAgent {cc.quote_word(value)}\n")
    assert g(cfg, "q")["identityagent"] == [value]
    cfg.write_text(f"Host q\n  IdentityAgent {cc.quote_word(value + ' x')}\n")
    assert g(cfg, "q")["identityagent"] == [value + " x"]
    assert cc.config_value("User", "o'neil") == "o\\'neil"


def test_a_line_break_cannot_be_written():
    for bad in ("a\nb", "a\rb", "a\x00b"):
        with pytest.raises(UsageError):
            cc.quote_word(bad)
    with pytest.raises(UsageError):
        cc.render_option("proxycommand", "nc %h %p\nHost *")


def test_ssh_g_reader_keeps_every_value(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("Host m\n  SendEnv A B\n  SendEnv C\n  IdentityFile /k/1\n  IdentityFile /k/2\n")
    got = cc.read_ssh_g(RUN, "m", cfg, user="u", port=2022)
    assert got["sendenv"] == ["A", "B", "C"] and got["identityfile"] == ["/k/1", "/k/2"]
    assert got["user"] == ["u"] and got["port"] == ["2022"]
    assert cc.ssh_g_argv("m", cfg, user="u", port=1) == ["ssh", "-F", str(cfg), "-l", "u", "-p",
                                                          "1", "-G", "--", "m"]
    cfg.write_text("Host m\n  NoSuchOption yes\n")
    with pytest.raises(cc.SshGError, match="NoSuchOption|Bad configuration"):
        cc.read_ssh_g(RUN, "m", cfg)


# --- generated option sets ---------------------------------------------------------------

_word = st.text(alphabet="abcz019._-/'\"\\ #%=,", min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and not s.startswith("#") and "%" not in s.replace("%%", ""))
_path = _word.map(lambda s: "/tmp/" + s)
_choices = {
    "Port": st.integers(1, 65535).map(str),
    "User": st.sampled_from(["alice", "o'neil", "bob smith", 'q"uote']),
    "Ciphers": st.sampled_from(["aes128-ctr", "aes256-gcm@openssh.com,aes128-ctr", "-aes128-ctr"]),
    "KexAlgorithms": st.sampled_from(["curve25519-sha256", "+diffie-hellman-group14-sha1"]),
    "GSSAPIAuthentication": st.sampled_from(["yes", "no"]),
    "AddressFamily": st.sampled_from(["inet", "inet6", "any"]),
    "ConnectTimeout": st.integers(1, 99).map(str),
    "Compression": st.sampled_from(["yes", "no"]),
    "HostKeyAlias": st.sampled_from(["ws-key", "k1"]),
    "ProxyCommand": st.sampled_from(["nc %h %p", "ssh -W %h:%p gw # %n", "sh -c 'exec nc %h %p'",
                                     'socat - "TCP:%h:%p"', "none"]),
    "ProxyJump": st.sampled_from(["gw", "u@gw:2222,gw2", "none"]),
    "IdentityAgent": _path.map(cc.quote_word),
    "SetEnv": st.lists(st.tuples(st.sampled_from(["A", "B", "C_D"]), _word), max_size=3,
                       unique_by=lambda t: t[0]).map(
        lambda kv: " ".join(cc.quote_word(f"{k}={v}") for k, v in kv) or "A=1"),
    "UserKnownHostsFile": st.lists(_path, min_size=1, max_size=2).map(
        lambda ps: " ".join(cc.config_path_value(p) for p in ps if " " not in p) or "/tmp/kh"),
    "CertificateFile": _path.filter(lambda p: " " not in p).map(cc.config_path_value),
}
_option_sets = st.dictionaries(st.sampled_from(sorted(_choices)), st.none(), min_size=1,
                               max_size=8).flatmap(
    lambda keys: st.fixed_dictionaries({k: _choices[k] for k in keys}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=_option_sets, star=st.booleans())
def test_generated_option_sets_round_trip(tmp_path, opts, star):
    """Random option sets for the host (and sometimes a Host * block after it that sets
    some of the same options for everyone): the alias resolves the same."""
    body = "".join(f"  {k} {v}\n" for k, v in opts.items())
    text = f"Host gen\n  HostName 192.0.2.99\n{body}"
    if star:
        text += "Host *\n  ProxyCommand nc -q0 %h %p\n  Compression yes\n  ConnectTimeout 3\n"
    cfg = tmp_path / "gen.conf"
    cfg.write_text(text)
    try:
        g(cfg, "gen")
    except cc.SshGError:
        return  # a combination ssh itself refuses (not what is tested here)
    unrelated = g(cfg, "unrelated.example")
    block = cc.managed_block(RUN, ALIAS, "gen", KEY, ssh_config=cfg)
    cfg.write_text(cc.upsert_block(text, block))
    h, m = g(cfg, "gen"), g(cfg, ALIAS)
    assert deciding_mismatches(h, m, "gen") == {}
    assert cc.differences(h, m, "gen", ALIAS) == {}
    assert g(cfg, "unrelated.example") == unrelated
