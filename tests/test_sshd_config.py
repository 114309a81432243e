"""The sshd configuration evaluator (checks/sshd_config.py).

The most important test is the differential one: hypothesis writes sshd configurations
(Include files, Match blocks, mixed-case keywords, ``=`` separators, quotes, comments,
some invalid lines) and connection specs, and for each one the evaluator must give, for
every keyword it evaluates, exactly what the real ``/usr/sbin/sshd -T -C ... -f FILE``
prints; when sshd refuses the configuration, the evaluator must report a problem, and
when sshd accepts it, the evaluator must report none. The generators draw the connection
first and write Match criteria for it, so that many cases have a Match block that changes
a value; the test asserts that they do, per kind of criterion (a generator whose Match
blocks never apply would let a broken criterion pass unseen).
"""

from __future__ import annotations

import collections
import grp
import ipaddress
import os
import pwd
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mkdoctor.openssh import sshd_config as sc
from mkdoctor.openssh.keywords import parse_banner
from mkdoctor.openssh.sshd_config import Connection, EffectiveConfig, Snapshot, evaluate

SSHD = "/usr/sbin/sshd"
# The build of this machine's sshd (the OpenSSH package's ssh -V names the same build):
# its keywords are judged for it.
LOCAL_BUILD = parse_banner(subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr)


def conn(user="alice", addr="10.1.2.3", laddr="10.0.0.1", lport=22, groups=("alice",), host=None):
    return Connection(user, host or addr, addr, laddr, lport, groups)


def ev(text: str, c: Connection | None = None, **files: str) -> EffectiveConfig:
    mapping = {"/etc/ssh/sshd_config": text}
    mapping.update({f"/etc/ssh/{k.replace('__', '.')}": v for k, v in files.items()})
    return evaluate("/etc/ssh/sshd_config", mapping, c or conn())


# --- unit tests: syntax -----------------------------------------------------------------


def test_defaults_when_nothing_is_set():
    r = ev("# nothing\n\n")
    assert r.values["permitrootlogin"] == "prohibit-password"
    assert r.values["passwordauthentication"] == "yes"
    assert r.values["authorizedkeysfile"] == ".ssh/authorized_keys .ssh/authorized_keys2"
    assert r.values["permitlisten"] == "any"
    assert r.origin["permitrootlogin"] == "default"
    assert r.problems == []


def test_first_value_wins_and_origin_names_the_line():
    r = ev("PermitRootLogin no\nPermitRootLogin yes\n")
    assert r.values["permitrootlogin"] == "no"
    assert r.origin["permitrootlogin"] == "/etc/ssh/sshd_config:1"
    assert "line 1" in r.where("permitrootlogin")


@pytest.mark.parametrize("line", [
    "PermitRootLogin yes", "permitrootlogin=yes", "PERMITROOTLOGIN = yes", "  PermitRootLogin\tYES",
    'PermitRootLogin "yes"', "PermitRootLogin yes # a comment", '"PermitRootLogin" yes',
])
def test_spellings(line):
    r = ev(line + "\n")
    assert r.values["permitrootlogin"] == "yes", r.problems
    assert r.problems == []


def test_without_password_is_prohibit_password():
    assert ev("PermitRootLogin without-password\n").values["permitrootlogin"] == "prohibit-password"
    assert sc.parse_sshd_t("permitrootlogin without-password\n")["permitrootlogin"] == "prohibit-password"


def test_challenge_response_is_kbdinteractive():
    assert ev("ChallengeResponseAuthentication no\n").values["kbdinteractiveauthentication"] == "no"


def test_list_keywords_take_the_whole_first_line():
    r = ev('AuthorizedKeysFile "%h/my keys" .ssh/k2\nAuthorizedKeysFile other\n')
    assert r.values["authorizedkeysfile"] == "%h/my keys .ssh/k2"
    r = ev("PermitListen 8080 localhost:9090\n")
    assert r.values["permitlisten"] == "*:8080 localhost:9090"


def test_relative_include_is_relative_to_etc_ssh_and_globs_sort():
    r = ev("Include sshd_config.d/*.conf\nPermitRootLogin no\n",
           **{"sshd_config.d/20-b__conf": "PermitRootLogin forced-commands-only\n",
              "sshd_config.d/10-a__conf": "PasswordAuthentication no\nPermitRootLogin yes\n"})
    assert r.values["permitrootlogin"] == "yes"
    assert r.origin["permitrootlogin"] == "/etc/ssh/sshd_config.d/10-a.conf:2"
    assert r.values["passwordauthentication"] == "no"


def test_include_of_nothing_is_silently_ignored():
    r = ev("Include /nowhere/*.conf /nowhere.conf\nPermitRootLogin no\n")
    assert r.problems == [] and r.values["permitrootlogin"] == "no"


# --- unit tests: Match ------------------------------------------------------------------


def test_match_user_applies_only_to_that_user():
    text = "AllowTcpForwarding yes\nMatch User alice\n  AllowTcpForwarding no\n"
    assert ev(text, conn(user="alice")).values["allowtcpforwarding"] == "no"
    assert ev(text, conn(user="bob")).values["allowtcpforwarding"] == "yes"


def test_negation_alone_never_matches():
    text = "Match User !root\n  PasswordAuthentication no\n"
    assert ev(text, conn(user="alice")).values["passwordauthentication"] == "yes"
    text = "Match User *,!root\n  PasswordAuthentication no\n"
    assert ev(text, conn(user="alice")).values["passwordauthentication"] == "no"
    assert ev(text, conn(user="root")).values["passwordauthentication"] == "yes"


def test_match_address_cidr_and_negation():
    text = "Match Address 10.0.0.0/8,!10.9.0.0/16\n  PermitRootLogin yes\n"
    assert ev(text, conn(addr="10.1.2.3")).values["permitrootlogin"] == "yes"
    assert ev(text, conn(addr="10.9.2.3")).values["permitrootlogin"] == "prohibit-password"
    assert ev(text, conn(addr="192.168.1.1")).values["permitrootlogin"] == "prohibit-password"


def test_match_group_needs_known_groups():
    text = "Match Group wheel\n  PermitRootLogin yes\n"
    assert ev(text, conn(groups=("alice", "wheel"))).values["permitrootlogin"] == "yes"
    r = ev(text, conn(groups=None))
    assert r.values["permitrootlogin"] == "prohibit-password"
    assert any("groups" in p for p in r.notes)


def test_match_localport_host_all():
    text = ("UseDNS yes\nMatch LocalPort 2222 Host *.example.org\n  PermitRootLogin no\n"
            "Match All\n  PasswordAuthentication no\n")
    r = ev(text, conn(lport=2222, host="pc.EXAMPLE.org"))
    assert r.values["permitrootlogin"] == "no" and r.values["passwordauthentication"] == "no"
    # The host matches, the port does not: only LocalPort keeps the block out.
    r = ev(text, conn(lport=22, host="pc.example.org"))
    assert r.values["permitrootlogin"] == "prohibit-password"
    assert r.values["passwordauthentication"] == "no"
    assert ev(text, conn(lport=22)).values["permitrootlogin"] == "prohibit-password"


def test_match_host_sees_the_address_unless_usedns_yes():
    """servconf.c match_cfg_line compares Match Host with ci->host, which sshd fills from
    auth_get_canonical_hostname(ssh, options.use_dns): the address under UseDNS no (the
    default). The client's name only counts with UseDNS yes."""
    block = "Match Host *.example.org\n  PermitRootLogin yes\n"
    named = conn(host="pc.example.org", addr="192.0.2.5")
    assert ev(block, named).values["permitrootlogin"] == "prohibit-password"
    assert ev("UseDNS no\n" + block, named).values["permitrootlogin"] == "prohibit-password"
    assert ev("UseDNS yes\n" + block, named).values["permitrootlogin"] == "yes"
    # under UseDNS no a Host pattern can match the address itself
    assert ev("Match Host 192.0.2.*\n  PermitRootLogin yes\n", named).values["permitrootlogin"] == "yes"


def test_match_localport_alone():
    text = "PermitRootLogin no\nMatch LocalPort 2222\n  PermitRootLogin yes\n"
    assert ev(text, conn(lport=2222)).values["permitrootlogin"] == "yes"
    assert ev(text, conn(lport=22)).values["permitrootlogin"] == "no"
    assert ev(text, conn(lport=22222)).values["permitrootlogin"] == "no"


def test_match_block_value_beats_global_value():
    r = ev("PermitRootLogin no\nMatch User alice\n PermitRootLogin yes\n")
    assert r.values["permitrootlogin"] == "yes"
    assert r.origin["permitrootlogin"] == "/etc/ssh/sshd_config:3"


def test_include_inside_a_match_block():
    files = {"d__conf": "PermitRootLogin yes\n"}
    text = "Match User alice\n  Include /etc/ssh/d.conf\n"
    assert ev(text, conn(user="alice"), **files).values["permitrootlogin"] == "yes"
    assert ev(text, conn(user="bob"), **files).values["permitrootlogin"] == "prohibit-password"


# --- unit tests: hostile input ------------------------------------------------------------


def test_malformed_lines_are_problems_not_crashes():
    r = ev("PermitRootLogin\nPermitRootLogin maybe\nFrobnicate yes\nAuthorizedKeysFile \"a b\n"
           "Match Frob x\nPasswordAuthentication yes no\nMatch User bob\nUsePAM yes\n")
    text = "\n".join(r.problems)
    for needle in ("line 1", "line 2", "line 3", "line 4", "line 5", "line 6", "line 8"):
        assert needle in text, (needle, r.problems)
    assert r.values["permitrootlogin"] == "prohibit-password"


def test_binary_garbage():
    garbage = bytes(range(256)).decode("latin-1") + "\x00\xff\ufffd\n" * 3
    r = ev(garbage + "PermitRootLogin no\n")
    assert r.problems
    assert r.values["permitrootlogin"] in ("no", "prohibit-password")


def test_include_loop_is_reported():
    r = ev("Include /etc/ssh/a.conf\nPermitRootLogin no\n",
           **{"a__conf": "Include /etc/ssh/b.conf\n", "b__conf": "Include /etc/ssh/a.conf\n"})
    assert any("loop" in p for p in r.problems)
    assert r.values["permitrootlogin"] == "no"


def test_unreadable_files():
    snap = Snapshot(files={"/etc/ssh/sshd_config": "Include /etc/ssh/x.conf\n",
                           "/etc/ssh/x.conf": sc.FileUnavailable("Permission denied")},
                    globs={"/etc/ssh/x.conf": ["/etc/ssh/x.conf"]})
    r = evaluate("/etc/ssh/sshd_config", snap, conn())
    assert any("Permission denied" in p for p in r.problems)
    r = evaluate("/etc/ssh/sshd_config", Snapshot(files={
        "/etc/ssh/sshd_config": sc.FileUnavailable("Permission denied")}), conn())
    assert "Permission denied" in r.error and r.values == {}


def test_snapshot_collects_what_it_lacks():
    snap = Snapshot(files={"/etc/ssh/sshd_config": "Include sshd_config.d/*.conf\n"})
    evaluate("/etc/ssh/sshd_config", snap, conn())
    assert snap.wanted == {"/etc/ssh/sshd_config.d/*.conf"}


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_any_text_never_crashes(text):
    r = ev(text)
    assert set(sc.KEYWORDS) <= set(r.values)


# --- unit tests: PermitListen and sshd -T output -----------------------------------------


@pytest.mark.parametrize("value,port,ok", [
    ("any", 31415, True), ("none", 31415, False), ("*:31415", 31415, True),
    ("*:31416", 31415, False), ("localhost:31415", 31415, True), ("localhost:*", 1, True),
    ("127.0.0.1:31415", 31415, False),  # ssh -R asks for "localhost", not 127.0.0.1
    ("local*:31415 *:2", 31415, True), ("[::1]:31415", 31415, False),
])
def test_listen_permitted(value, port, ok):
    assert sc.listen_permitted(value, port) is ok


def test_parse_sshd_t_output():
    out = ("port 22\nlistenaddress 0.0.0.0:22\nlistenaddress [::]:22\npermitrootlogin without-password\n"
           "authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2\npermitlisten any\n")
    v = sc.parse_sshd_t(out)
    assert v["permitrootlogin"] == "prohibit-password"
    assert v["authorizedkeysfile"] == ".ssh/authorized_keys .ssh/authorized_keys2"
    assert v["listenaddress"] == "0.0.0.0:22 [::]:22"
    cfg = sc.oracle_config(out, "sshd -T")
    assert cfg.origin["permitrootlogin"] == "sshd -T"


# --- the differential test against sshd -T --------------------------------------------------
#
# The connection is drawn first, and most Match criteria are written for it (its user, a
# group it is in, a CIDR holding its address, its local address and port, negations of
# each, mixed-case patterns), so that Match blocks often apply and change a value: a
# criterion that never matches, a LocalPort that is ignored or an Include inside a Match
# block that does not apply is then seen to differ from sshd. Include files nest (each
# may include the later ones), and are named by absolute path, by glob, or relative to
# /etc/ssh (sshd's SSHDIR) through "..", so nothing is ever written under /etc/ssh.


def _users() -> list[str]:
    users = ["root", "daemon", "nobody"]
    # A user with a supplementary group, if this machine has one (Match Group then sees
    # a user in two groups).
    for pw in sorted(pwd.getpwall(), key=lambda p: p.pw_uid):
        if pw.pw_name not in users and len(os.getgrouplist(pw.pw_name, pw.pw_gid)) > 1:
            users.append(pw.pw_name)
            break
    return users


USERS = _users()
GROUPS = ["root", "daemon", "nogroup", "adm", "sys"]
ADDRS = ["10.1.2.3", "10.9.0.5", "192.168.1.20", "127.0.0.1", "2001:db8::5", "203.0.113.7"]
LADDRS = ["10.0.0.1", "192.168.1.1", "::1", "10.1.2.1"]
LPORTS = [22, 2222, 8022]
HOSTS = ["pc.example.org", "PC.Example.ORG", "gw.lab.example.net"]
VALUES = {
    "PermitRootLogin": ["yes", "no", "prohibit-password", "without-password",
                        "forced-commands-only", "Yes", "maybe"],
    "PasswordAuthentication": ["yes", "no", "NO"],
    "KbdInteractiveAuthentication": ["yes", "no"],
    "ChallengeResponseAuthentication": ["yes", "no"],
    "PubkeyAuthentication": ["yes", "no"],
    "AllowTcpForwarding": ["yes", "no", "local", "remote", "all", "nope"],
    "DisableForwarding": ["yes", "no"],
    "GatewayPorts": ["no", "yes", "clientspecified"],
    "PermitEmptyPasswords": ["no", "yes"],
    "PermitListen": ["any", "none", "31415", "localhost:31415 31416", "*:*", "localhost:*",
                     "127.0.0.1:31415", "[::1]:22", "0", "a:b:c", "none 31415"],
    "AuthorizedKeysFile": [".ssh/authorized_keys", "%h/.ssh/k1 /etc/ssh/keys/%u", '"a b" c',
                           "none", '""'],
    "AuthenticationMethods": ["any", "publickey", "publickey,password", "publickey password"],
    "UsePAM": ["yes", "no"],
    "StrictModes": ["yes", "no"],
    "AllowUsers": ["*", "root alice", "*@10.0.0.0/8"],
    "DenyUsers": ["nobody", "nosuch daemon"],
    "AllowGroups": ["*", "root adm"],
    "DenyGroups": ["nogroup"],
    "ForceCommand": ["internal-sftp", "echo hi there", "/bin/true # a comment"],
    "ChrootDirectory": ["none", "/srv/%u", '"/srv/a b"'],
    "MaxStartups": ["10:30:100", "4096", "3:50:10", "5:200:10"],
    "PermitOpen": ["any", "none", "a:1 b:2", "[::1]:22", "a:b:c", "host/22"],
    "Port": ["22", "2222", "0"],
    # Keywords OpenSSH dropped (sDeprecated/sIgnore: logged, and sshd starts), compiled
    # out (sUnsupported on this build), vendor ones (Debian's, known here; Red Hat's,
    # unknown here: sshd refuses to start).
    "RSAAuthentication": ["yes", "no"],
    "RhostsRSAAuthentication": ["no"],
    "UsePrivilegeSeparation": ["sandbox", "yes"],
    "KeyRegenerationInterval": ["3600"],
    "ServerKeyBits": ["1024"],
    "Protocol": ["2"],
    "KerberosTgtPassing": ["no"],
    "GSSAPIUseSessionCredCache": ["no"],
    "DebianBanner": ["no"],
    "KerberosUseKuserok": ["no"],
}
# Values sshd refuses (drawn less often, so that most configurations are accepted).
BAD_VALUES = {"maybe", "nope", "0", "a:b:c", "none 31415", '""', "5:200:10", "host/22"}
# Keywords sshd refuses inside a Match block.
NOT_IN_MATCH = {"UsePAM", "StrictModes", "Port", "MaxStartups", "UsePrivilegeSeparation",
                "KeyRegenerationInterval", "ServerKeyBits", "Protocol", "KerberosTgtPassing",
                "GSSAPIUseSessionCredCache", "DebianBanner"}
# Criteria written without looking at the connection: syntax corners and invalid ones.
CRITERIA = {
    "User": ["root", "daemon", "nobody", "alice", "*", "r*", "?oot", "!root", "*,!root",
             "daemon,nobody", "root,!daemon"],
    "Group": ["root", "daemon", "nogroup", "adm", "*", "!root", "*,!adm", "sys,nogroup"],
    "Host": ["*.example.org", "pc.example.org", "10.*", "*", "!pc.example.org", "*,!10.*"],
    "Address": ["10.0.0.0/8", "10.1.0.0/16,!10.1.2.3", "192.168.1.0/24", "2001:db8::/32",
                "127.0.0.1", "10.*", "!10.0.0.0/8", "*,!192.168.0.0/16", "10.1.2.3/24", "0.0.0.0/0"],
    "LocalAddress": ["10.0.0.1", "10.0.0.0/8", "192.168.1.1", "::1", "*"],
    "LocalPort": ["22", "2222", "22,2222"],
}


def mixed_case(draw, word: str) -> str:
    flips = draw(st.integers(0, (1 << len(word)) - 1))  # one draw: bit i upper-cases char i
    return "".join(c.upper() if flips >> i & 1 else c.lower() for i, c in enumerate(word))


def _nets(addr: str) -> tuple[list[str], list[str]]:
    """CIDRs that hold ``addr`` and CIDRs of the same sizes next to them (that do not)."""
    ip = ipaddress.ip_address(addr)
    bits = ip.max_prefixlen
    inside, outside = [], []
    for prefix in ((8, 16, 24, 32) if ip.version == 4 else (32, 64, 128)):
        net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
        inside.append(str(net))
        nxt = (int(net.network_address) + net.num_addresses) % (1 << bits)
        outside.append(f"{ipaddress.ip_address(nxt) if ip.version == 4 else ipaddress.IPv6Address(nxt)}/{prefix}")
    return inside, outside


@st.composite
def criterion_for(draw, name: str, c: Connection) -> str:
    """A pattern list for criterion ``name`` written for connection ``c``: mostly one that
    matches it, else one that just misses (a negation, a neighbouring network, another
    port, a user or group name in the wrong case: sshd compares those case-sensitively)."""
    pick = lambda options: draw(st.sampled_from(options))  # noqa: E731
    hit = draw(st.integers(0, 3)) != 0
    if name == "User":
        u, other = c.user, pick([x for x in USERS if x != c.user] + ["alice"])
        if hit:
            return pick([u, f"{u[0]}*", f"?{u[1:]}", "*", f"{other},{u}", f"*,!{other}",
                         f"*,!{u.upper()}"])
        return pick([f"*,!{u}", f"!{other}", u.upper(), u.capitalize(), u.upper(), other,
                     f"{u},!{u}"])
    if name == "Group":
        groups = list(c.groups or ("nogroup",))
        g, other = pick(groups), pick([x for x in GROUPS if x not in groups] or ["nosuch"])
        if hit:
            return pick([g, f"{other},{g}", f"{g[0]}*", "*", f"*,!{other}", f"*,!{g.upper()}"])
        return pick([f"*,!{g}", g.upper(), g.capitalize(), g.upper(), other]
                    + ([f"{groups[0]},!{groups[1]}"] if len(groups) > 1 else []))
    if name == "Host":
        h = c.host
        dotted = "." in h and not h.replace(".", "").isdigit()
        domain = h.split(".", 1)[1] if dotted else ""
        if hit:  # sshd compares host names in lower case
            return pick([h, h.lower(), h.upper(), mixed_case(draw, h), f"*,!nothere.{h}"]
                        + ([f"*.{domain}", f"*.{mixed_case(draw, domain)}"] if dotted else []))
        return pick([f"*,!{h}", f"!{h}", f"*,!{mixed_case(draw, h)}"]
                    + ([f"*.other.{domain}"] if dotted else ["10.99.*"]))
    if name in ("Address", "LocalAddress"):
        a = c.addr if name == "Address" else c.laddr
        inside, outside = _nets(a)
        star = a.split(".")[0] + ".*" if "." in a else a.split(":")[0] + ":*"
        if hit:
            return pick([a, pick(inside), pick(inside), "*", star,
                         f"{pick(outside)},{pick(inside)}", f"!{pick(outside)},{pick(inside)}"])
        return pick([pick(outside), f"{pick(inside)},!{a}", f"*,!{pick(inside)}",
                     f"!{pick(inside)}"])
    assert name == "LocalPort"
    return str(c.lport) if hit else str(pick([p for p in LPORTS if p != c.lport]))


@st.composite
def match_line(draw, c: Connection) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["Match All", "Match all", "match ALL"]))
    count = draw(st.sampled_from([1, 1, 1, 2, 2, 3]))
    names = draw(st.lists(st.sampled_from(sorted(CRITERIA)), min_size=count, max_size=count,
                          unique=True))
    parts = []
    for name in names:
        word = mixed_case(draw, name) if draw(st.booleans()) else name
        if draw(st.integers(0, 9)) == 0:
            pattern = draw(st.sampled_from(CRITERIA[name]))
        else:
            pattern = draw(criterion_for(name, c))
        parts.append(f"{word} {pattern}")
    return draw(st.sampled_from(["Match", "Match", "match", "MATCH"])) + " " + " ".join(parts)


# Keywords that included files set more often than others, so that two files of one glob
# often set the same keyword and their order decides which value wins.
HOT = ["PermitRootLogin", "PasswordAuthentication", "AllowTcpForwarding"]


@st.composite
def setting(draw, in_match: bool = False, hot: bool = False) -> str:
    keys = sorted(k for k in VALUES if not (in_match and k in NOT_IN_MATCH)
                  or draw(st.integers(0, 39)) == 0)
    if hot:
        keys = HOT
    key = draw(st.sampled_from(keys))
    good = [v for v in VALUES[key] if v not in BAD_VALUES]
    spec = sc.KEYWORDS.get(sc.ALIASES.get(key.lower(), key.lower()))
    default = spec.default if spec else None
    if in_match and draw(st.integers(0, 3)) != 0:  # mostly a value that changes something
        good = [v for v in good if sc.normalise(key, v.lower()) != default] or good
    value = draw(st.sampled_from(VALUES[key] if draw(st.integers(0, 14)) == 0 else good))
    if draw(st.integers(0, 5)) == 0 and " " not in value and '"' not in value:
        value = f'"{value}"'
    key = mixed_case(draw, key) if draw(st.booleans()) else key
    sep = draw(st.sampled_from([" ", " ", "=", " = ", "\t", "  "]))
    lead = draw(st.sampled_from(["", "", "  ", "\t"]))
    tail = draw(st.sampled_from(["", "", " # comment", "   "]))
    return f"{lead}{key}{sep}{value}{tail}"


@st.composite
def config(draw, c: Connection):
    """(main text, {name: text}) for connection ``c``. ``@DIR@`` stands for the directory
    the files are written to, ``@REL@`` for the same directory relative to /etc/ssh."""
    n_inc = draw(st.sampled_from([0, 1, 2, 2, 3, 3, 4]))
    inc_names = [f"inc{i}.conf" for i in range(n_inc)]

    def include_line(later: list[str], in_main: bool) -> str:
        where = draw(st.sampled_from(["@DIR@", "@DIR@", "@REL@"]))
        if in_main and draw(st.booleans()):  # a drop-in directory: one glob
            args = [draw(st.sampled_from(["inc*.conf", "*.conf"]))]
        else:
            targets = list(later) + (["inc*.conf"] if in_main else [])
            args = draw(st.lists(st.sampled_from(targets), min_size=1, max_size=2))
        word = draw(st.sampled_from(["Include", "include", "INCLUDE"]))
        return f"{word} " + " ".join(f"{where}/{t}" for t in args)

    def body(later: list[str], in_main: bool) -> list[str]:
        lines: list[str] = []
        in_match = not in_main  # an included file may be included inside a Match block
        for index in range(draw(st.integers(1, 8))):
            kinds = ["set", "set", "match", "match", "blank", "comment"]
            if later:
                kinds += ["include"]
            if index == 0 and in_main:  # a global value for the Match blocks to change,
                kinds = ["set", "include"] if later else ["set"]  # or drop-ins first
            if index == 0 and not in_main:  # drop-ins: which one comes first matters
                kinds = ["set"]
            kind = draw(st.sampled_from(kinds))
            if kind == "set":
                lines.append(draw(setting(in_match, hot=index == 0 and not in_main)))
            elif kind == "match":
                lines.append(draw(match_line(c)))
                in_match = True
                # the block's settings (and sometimes an Include) follow the Match line
                for _ in range(draw(st.integers(1, 3))):
                    if later and draw(st.integers(0, 4)) == 0:
                        lines.append("  " + include_line(later, in_main))
                    else:
                        lines.append("  " + draw(setting(True)))
            elif kind == "blank":
                lines.append("")
            elif kind == "comment":
                lines.append("# PermitRootLogin yes")
            else:
                lines.append(include_line(later, in_main))
        return lines

    includes = {name: "\n".join(body(inc_names[i + 1:], False)) + "\n"
                for i, name in enumerate(inc_names)}
    main = body(inc_names, True)
    if not any(line.lower().startswith("match") for line in main):
        main += [draw(match_line(c))] + ["  " + draw(setting(True))
                                         for _ in range(draw(st.integers(1, 3)))]
    main = "\n".join(main) + "\n"
    return main, includes


@st.composite
def connection(draw) -> Connection:
    user = draw(st.sampled_from(USERS))
    addr = draw(st.sampled_from(ADDRS))
    host = draw(st.sampled_from([addr, addr] + HOSTS))
    laddr = draw(st.sampled_from(LADDRS))
    lport = draw(st.sampled_from(LPORTS))
    return Connection(user, host, addr, laddr, lport, groups_of(user))


@st.composite
def scenario(draw) -> tuple[tuple[str, dict[str, str]], Connection]:
    c = draw(connection())
    return draw(config(c)), c


def groups_of(user: str) -> tuple[str, ...]:
    pw = pwd.getpwnam(user)
    return tuple(grp.getgrgid(g).gr_name for g in os.getgrouplist(user, pw.pw_gid))


@pytest.fixture(scope="module")
def hostkey_dir():
    if not os.path.exists(SSHD):
        pytest.fail(f"{SSHD} is not installed (apt-get install -y openssh-server)")
    if not os.path.isdir(sc.SSHDIR):
        pytest.fail(f"{sc.SSHDIR} does not exist: relative Includes are resolved from it")
    d = Path(tempfile.mkdtemp(prefix="mkd-sshdT-"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "hk")], check=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def sshd_t(main: Path, c: Connection, usedns: str = "no") -> subprocess.CompletedProcess:
    # sshd -T -C takes host= as given; the running sshd matches Match Host against the
    # client's name only with UseDNS yes, else against its address: give it that.
    return subprocess.run([SSHD, "-T", "-C", c.spec(usedns), "-f", str(main)],
                          capture_output=True, text=True, timeout=20)


def governing_match(origin: str) -> str:
    """The Match line above the line ``origin`` (``path:line``) names, lower case; ""
    when the line is in an included file's top level (its Include sits in a Match)."""
    path, _, number = origin.rpartition(":")
    for line in reversed(Path(path).read_text().split("\n")[:int(number) - 1]):
        if line.strip().lower().startswith("match"):
            return line.strip().lower()
    return ""


def differential_case(hostkey_dir: Path, cfg: tuple[str, dict[str, str]], c: Connection) -> list[str]:
    """Write the configuration, ask sshd and the evaluator, compare. Returns what the
    case exercised (for the coverage assertions of the differential test)."""
    main_text, includes = cfg
    d = Path(tempfile.mkdtemp(dir=hostkey_dir))
    # Relative to /etc/ssh, through /etc/ssh's own name: from any other directory the
    # path leads nowhere (the "../ssh" step), so a wrong base directory is seen.
    rel = os.path.join("..", os.path.basename(sc.SSHDIR), os.path.relpath(d, sc.SSHDIR))

    def fill(text: str) -> str:
        return text.replace("@DIR@", str(d)).replace("@REL@", rel)

    try:
        # Mostly UseDNS yes (Match Host then sees the client's name), sometimes the
        # default no (it sees the address): stable per case.
        usedns = "no" if zlib.crc32(main_text.encode()) % 4 == 0 else "yes"
        main_text = f"HostKey {hostkey_dir / 'hk'}\nUseDNS {usedns}\n" + fill(main_text)
        (d / "sshd_config").write_text(main_text)
        for name, text in includes.items():
            (d / name).write_text(fill(text))
        done = sshd_t(d / "sshd_config", c, usedns)
        ours = evaluate(str(d / "sshd_config"), sc.local_loader(), c, build=LOCAL_BUILD)
        listing = main_text + "".join(f"--- {n}\n{fill(t)}" for n, t in includes.items())
        if done.returncode != 0:
            assert ours.problems, f"sshd refused:\n{done.stderr}\nconfig:\n{listing}"
            return ["refused"]
        assert ours.problems == [], f"sshd accepted, we complain:\n{listing}"
        theirs = sc.parse_sshd_t(done.stdout)
        for kw in sc.KEYWORDS:
            assert ours.values[kw] == theirs.get(kw, ""), (
                f"{kw}: ours {ours.values[kw]!r} ({ours.origin[kw]}) != sshd -T {theirs.get(kw)!r}\n"
                f"connection {c.spec()} groups {c.groups}\nconfig:\n{listing}")
        # What the connection's Match blocks changed: sshd's values (equal to ours, as
        # just asserted) against the evaluator's first pass (the lines outside Match
        # blocks; sshd -T cannot say, as it refuses Match criteria without -C).
        first = sc._Pass(sc.local_loader(), None, None, [], sc.SSHDIR)
        first.run_file(str(d / "sshd_config"), main_text, 0, 0, (str(d / "sshd_config"),))
        changed = [kw for kw, spec in sc.KEYWORDS.items()
                   if theirs.get(kw, "") != first.values.get(kw, spec.default)]
        seen = ["accepted"]
        if changed:
            seen.append("a Match changed a value")
        for kw in changed:
            line = governing_match(ours.origin[kw])
            seen += [f"changed by {name.lower()}" for name in CRITERIA
                     if f" {name.lower()} " in f" {line} "] or ["changed through an Include"]
            if not ours.origin[kw].startswith(str(d / "sshd_config:")):
                seen.append("changed from an included file")
        if any(not o.startswith(str(d / "sshd_config:")) for o in ours.origin.values()
               if o != sc.ORIGIN_DEFAULT):
            seen.append("a value from an included file")
        return sorted(set(seen))
    finally:
        shutil.rmtree(d, ignore_errors=True)


EXAMPLES = int(os.environ.get("MKD_DIFF_EXAMPLES", "300"))


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="sshd -T needs root to read the host key")
def test_differential_against_sshd_T(hostkey_dir):
    """Every generated case agrees with sshd -T, and the cases are worth it: many have a
    Match block that changes a value, through each kind of criterion and through
    included files (asserted, so that a generator that drifts cannot go unnoticed)."""
    seen: collections.Counter = collections.Counter()

    # In CI the examples are derandomized (the same every run: a submission passes or fails
    # on its own merits); locally each run explores new ones, and MKD_DIFF_EXAMPLES=3000
    # goes deeper.
    @given(case=scenario())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=bool(os.environ.get("CI")),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    def check(case):
        found = differential_case(hostkey_dir, *case)
        for what in found:
            event(what)
        seen.update(found)

    check()
    if EXAMPLES < 200:
        return
    summary = dict(seen)
    assert seen["accepted"] >= EXAMPLES // 2, summary
    assert seen["a Match changed a value"] >= seen["accepted"] // 3, summary
    for name in CRITERIA:
        assert seen[f"changed by {name.lower()}"] >= 5, (name, summary)
    assert seen["changed from an included file"] >= 5, summary
    assert seen["changed through an Include"] >= 1, summary


AUTH_CHECK_CASES = [
    # (config, does sshd refuse?) -- measured with sshd -T -C on OpenSSH 9.2
    ("PubkeyAuthentication no\nAuthenticationMethods publickey\nMatch All\nPubkeyAuthentication yes\n", True),
    ("PubkeyAuthentication yes\nAuthenticationMethods publickey\nMatch All\nPubkeyAuthentication no\n", False),
    ("PubkeyAuthentication no\nMatch All\nAuthenticationMethods publickey\n", True),
    ("PubkeyAuthentication no\nMatch User nobody\nAuthenticationMethods publickey\n", False),
    ("PubkeyAuthentication no\nInclude @DIR@/inc0.conf\nInclude @DIR@/inc1.conf\n", True),
]


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="sshd -T needs root to read the host key")
@pytest.mark.parametrize("text,refused", AUTH_CHECK_CASES)
def test_auth_methods_start_up_check_is_on_the_global_settings(hostkey_dir, text, refused):
    """sshd checks AuthenticationMethods once, on the global settings (Match All blocks
    included), not on what a connection's Match blocks make of them."""
    d = Path(tempfile.mkdtemp(dir=hostkey_dir))
    try:
        (d / "inc0.conf").write_text("Match All\nPubkeyAuthentication yes\n")
        (d / "inc1.conf").write_text("AuthenticationMethods publickey\n")
        (d / "sshd_config").write_text(f"HostKey {hostkey_dir / 'hk'}\n" + text.replace("@DIR@", str(d)))
        c = Connection("root", "10.1.2.3", "10.1.2.3", "10.0.0.1", 22, ("root",))
        done = sshd_t(d / "sshd_config", c)
        assert (done.returncode != 0) == refused, done.stderr
        ours = evaluate(str(d / "sshd_config"), sc.local_loader(), c)
        complained = any("cannot be satisfied" in p for p in ours.problems)
        assert complained == refused, ours.problems
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- keywords judged for the build (keywords.py) -----------------------------------------

DEBIAN_9_2 = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6"


def test_deprecated_keywords_are_notes_not_refusals():
    """servconf.c sDeprecated: sshd logs "Deprecated option" and starts (sshd/011, 044)."""
    from mkdoctor.openssh.keywords import parse_banner

    text = ("RSAAuthentication yes\nRhostsRSAAuthentication no\nUsePrivilegeSeparation sandbox\n"
            "KeyRegenerationInterval 3600\nServerKeyBits 1024\nProtocol 2\nPermitRootLogin no\n")
    r = evaluate("/etc/ssh/sshd_config", {"/etc/ssh/sshd_config": text}, conn(),
                 build=parse_banner(DEBIAN_9_2))
    assert r.problems == []
    assert r.values["permitrootlogin"] == "no"
    assert sum("Deprecated option" in n for n in r.notes) == 5, r.notes  # Protocol: sIgnore
    # a global-only deprecated keyword inside a Match block is still refused
    r = ev("Match User bob\n  ServerKeyBits 1024\n")
    assert any("not allowed within a Match block" in p for p in r.problems)


def test_dsa_authentication_is_pubkey_authentication():
    """servconf.c: { "dsaauthentication", sPubkeyAuthentication } (an alias)."""
    assert ev("DSAAuthentication no\n").values["pubkeyauthentication"] == "no"


def test_tilde_in_authorized_keys_file_is_the_home_of_sshd():
    """servconf.c sAuthorizedKeysFile: tilde_expand_filename(arg, getuid()) while
    reading the file, i.e. root's home, whoever logs in (sshd -T: /root/.ssh/ak)."""
    r = ev("AuthorizedKeysFile ~/.ssh/ak .ssh/authorized_keys ~root/x\n", conn(user="alice"))
    assert r.values["authorizedkeysfile"] == "/root/.ssh/ak .ssh/authorized_keys ~root/x"


def test_accumulating_keywords_and_values_as_sshd_T_prints_them():
    r = ev("AllowUsers a b\nAllowUsers c\nPort 22\nPort 2222\nMaxStartups 4096\n"
           "ForceCommand echo hi there\nPermitOpen a:1 b:2\n")
    assert r.values["allowusers"] == "a b c"
    assert r.values["port"] == "22 2222"
    assert r.values["maxstartups"] == "4096:30:4096"
    assert r.values["forcecommand"] == "echo hi there"
    assert r.values["permitopen"] == "a:1 b:2"
    assert ev("PermitOpen a:b:c\n").problems
