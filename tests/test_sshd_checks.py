"""MK205, MK310, MK311, MK312: the checks that judge an sshd.

Unit tests for the pure parts (verdicts, discovery, exposure, the remote scripts'
output), then integration tests against the harness's real sshd: faults are injected
as real drop-in files, Match blocks, garbage files and file modes, and mkdoctor runs as
a user would.
"""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from mkdoctor.openssh import hardening, sshd_config as sc
from mkdoctor import sshd_remote
from mkdoctor.checks import mk205_local_sshd as mk205
from mkdoctor.checks.mk311_password_authentication import exposure as remote_exposure
from mkdoctor.checks.mk312_tcp_forwarding import forwarding_verdict
from tests.harness.netns import link
from tests.helpers import by_id, free_port_pair, json_report

RESTART = "sudo systemctl reload ssh"


def cfg_of(text: str, user: str = "alice") -> sc.EffectiveConfig:
    conn = sc.Connection(user, "10.1.2.3", "10.1.2.3", "10.0.0.1", 22, (user,))
    return sc.evaluate("/etc/ssh/sshd_config", {"/etc/ssh/sshd_config": text}, conn)


# --- verdicts (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize("value,status", [
    ("no", "pass"), ("prohibit-password", "warn"), ("without-password", "warn"),
    ("forced-commands-only", "warn"), ("yes", "fail"),
])
def test_root_login_verdict(value, status):
    v = sc.root_login_verdict(cfg_of(f"PermitRootLogin {value}\n"), RESTART)
    assert v.status == status
    if status != "pass":
        assert "line 1 of /etc/ssh/sshd_config" in v.fix and "PermitRootLogin no" in v.fix


def test_root_login_default_warns_with_dropin_fix():
    v = sc.root_login_verdict(cfg_of("# nothing\n"), RESTART)
    assert v.status == "warn" and "default" in v.summary
    assert hardening.DROPIN in v.fix and "first value" in v.fix


@pytest.mark.parametrize("text,on", [
    ("PasswordAuthentication no\nKbdInteractiveAuthentication yes\n", False),  # no PAM
    ("PasswordAuthentication no\nKbdInteractiveAuthentication yes\nUsePAM yes\n", True),
    ("PasswordAuthentication yes\n", True),
    ("# defaults\n", True),
    ("PasswordAuthentication yes\nAuthenticationMethods publickey,password\n", False),
    ("PasswordAuthentication yes\nAuthenticationMethods publickey password\n", True),
])
def test_passwords_enabled(text, on):
    assert bool(sc.passwords_enabled(cfg_of(text))) is on


def test_password_verdict_exposure_decides():
    cfg = cfg_of("PasswordAuthentication yes\n")
    assert sc.password_verdict(cfg, True, "public", RESTART).status == "warn"
    private = sc.password_verdict(cfg, False, "private only", RESTART)
    assert private.status == "pass" and "private network" in private.summary and private.fix
    off = sc.password_verdict(cfg_of("PasswordAuthentication no\n"), True, "public", RESTART)
    assert off.status == "pass"


def test_remote_exposure():
    assert remote_exposure(["10.0.0.5", "fd00::1"], "10.0.0.5", "10.0.0.9")[0] is False
    assert remote_exposure(["10.0.0.5", "8.8.4.4"], "10.0.0.5", "10.0.0.9")[0] is True
    assert remote_exposure([], "10.0.0.5", "8.8.8.8")[0] is True  # we come across the internet
    assert remote_exposure(["127.0.0.1"], "1.1.1.1", "10.0.0.9")[0] is True
    # a documentation range stands for a public address, and says so
    exposed, why = remote_exposure(["192.0.2.2"], "192.0.2.2", "10.0.0.9")
    assert exposed and "192.0.2.2 (an RFC 5737/3849 test range, counted as public)" in why
    assert "test range" not in remote_exposure(["8.8.4.4"], "8.8.4.4", "10.0.0.9")[1]


@pytest.mark.parametrize("text,status,needle", [
    ("# defaults\n", "pass", ""),
    ("AllowTcpForwarding remote\n", "pass", ""),
    ("AllowTcpForwarding no\n", "fail", "AllowTcpForwarding no"),
    ("AllowTcpForwarding local\n", "fail", "AllowTcpForwarding local"),
    ("DisableForwarding yes\n", "fail", "DisableForwarding"),
    ("PermitListen none\n", "fail", "PermitListen none"),
    ("PermitListen 31415\n", "fail", "31416"),
    ("PermitListen 127.0.0.1:31415 127.0.0.1:31416\n", "fail", "PermitListen"),
    ("PermitListen localhost:31415 31416\n", "pass", ""),
    ("PermitListen localhost:*\n", "pass", ""),
    ("Match User alice\n  AllowTcpForwarding no\n", "fail", "line 2"),
])
def test_forwarding_verdict(text, status, needle):
    v = forwarding_verdict(cfg_of(text), (31415, 31416))
    assert v.status == status, v
    assert needle in v.summary + v.fix


# --- the remote scripts' output (pure parsers, and the real script under sh) -------------


def test_parse_facts():
    f = sshd_remote.parse_facts(
        "user=alice\nuid=1000\ngroups=alice sudo\nrootgroups=root\n"
        "conn=192.0.2.9 50000 10.0.0.5 22\nsshd=/usr/sbin/sshd\naddr=10.0.0.5/24\naddr=fe80::1%eth0\n")
    assert (f.user, f.uid, f.groups, f.root_groups) == ("alice", 1000, ("alice", "sudo"), ("root",))
    assert (f.client_addr, f.client_port, f.server_addr, f.server_port) == ("192.0.2.9", 50000, "10.0.0.5", 22)
    assert f.addresses == ["10.0.0.5", "fe80::1"] and f.sshd == "/usr/sbin/sshd"
    conn, notes = sshd_remote.connection_for(f, "root")
    assert conn.spec() == "user=root,host=192.0.2.9,addr=192.0.2.9,laddr=10.0.0.5,lport=22"
    assert conn.groups == ("root",) and not notes
    conn, notes = sshd_remote.connection_for(sshd_remote.parse_facts("user=bob\n"))
    assert conn.addr == "127.0.0.1" and notes


def test_server_build_from_the_remote_versions():
    f = sshd_remote.parse_facts("sshdversion=OpenSSH_9.2\nsshversion=OpenSSH_9.2p1 Debian-2+deb12u6\n")
    b = sshd_remote.server_build(f)
    assert (b.version, b.vendor) == ((9, 2), "debian")
    f = sshd_remote.parse_facts("sshdversion=OpenSSH_9.6\nsshversion=OpenSSH_9.2p1 Debian-2\n")
    assert (sshd_remote.server_build(f).version, sshd_remote.server_build(f).vendor) == ((9, 6), "")
    assert sshd_remote.server_build(sshd_remote.parse_facts("")).version is None


def test_facts_script_names_this_sshd_build():
    out = subprocess.run(["sh", "-c", sshd_remote.FACTS_SCRIPT], capture_output=True, text=True,
                         timeout=20).stdout
    b = sshd_remote.server_build(sshd_remote.parse_facts(out))
    local = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr
    assert b.version is not None and f"OpenSSH_{b.version[0]}.{b.version[1]}" in local


def test_oracle_output_parser():
    out = "port 22\npermitrootlogin without-password\nallowtcpforwarding yes\npermitlisten any\n"
    cfg = sc.oracle_config(out, sshd_remote.SOURCE_ORACLE)
    assert cfg.get("permitrootlogin") == "prohibit-password"
    assert sc.root_login_verdict(cfg, RESTART).status == "warn"
    assert forwarding_verdict(cfg, (31415, 31416)).status == "pass"


def test_fetch_script_under_a_real_shell(tmp_path):
    d = tmp_path / "ssh"
    (d / "conf.d").mkdir(parents=True)
    (d / "sshd_config").write_text("Include conf.d/*.conf\nPermitRootLogin no\n")
    (d / "conf.d" / "b.conf").write_bytes(b"\x00\xff garbage")
    (d / "conf.d" / "a.conf").write_text("PermitRootLogin yes")  # no final newline
    (d / "conf.d" / "A.conf").write_text("")
    (d / "conf.d" / "with space.conf").write_text("X yes\n")
    marker = "MKDF" + secrets.token_hex(4)
    pats = [str(d / "sshd_config"), str(d / "conf.d" / "*.conf"), str(d / "nothing*.conf")]
    done = subprocess.run(["sh", "-c", sshd_remote.FETCH_SCRIPT, "sh", marker, *pats],
                          capture_output=True, timeout=10, env={"LANG": "en_US.UTF-8", "PATH": os.environ["PATH"]})
    globs, files = sshd_remote.parse_fetch(done.stdout.decode("utf-8", "replace"), marker)
    conf = [str(d / "conf.d" / n) for n in ("A.conf", "a.conf", "b.conf", "with space.conf")]
    assert globs[pats[1]] == conf  # C-locale order: upper case first
    assert globs[pats[2]] == []
    assert files[conf[1]] == "PermitRootLogin yes"
    assert files[conf[0]] == ""
    assert files[str(d / "sshd_config")].endswith("PermitRootLogin no\n")
    assert "\x00" in files[conf[2]]


# --- MK205 discovery (pure) ----------------------------------------------------------------


def test_find_sshd_from_process_data():
    procs = [
        mk205.ProcInfo(10, "sshd", ("sshd: /usr/sbin/sshd -D -f /etc/ssh/alt_config [listener] 0 of 10-100 startups",)),
        mk205.ProcInfo(11, "sshd", ("sshd: alice [priv]",)),
        mk205.ProcInfo(12, "sshd", ("sshd: alice@pts/0",)),
        mk205.ProcInfo(13, "sshd", ("sshd: [accepted]",)),
        mk205.ProcInfo(20, "sshd", ("/usr/sbin/sshd", "-D"), "/usr/sbin/sshd"),
        mk205.ProcInfo(30, "sshd.exe", ("C:\\OpenSSH\\sshd.exe",)),
        mk205.ProcInfo(40, "bash", ("bash",)),
    ]
    listeners = [mk205.Listener(20, "0.0.0.0", 22), mk205.Listener(20, "::", 22),
                 mk205.Listener(10, "127.0.0.1", 2222), mk205.Listener(None, "0.0.0.0", 80)]
    found = {s.pid: s for s in mk205.find_sshd(procs, listeners)}
    assert set(found) == {10, 20, 30}
    assert found[10].config == "/etc/ssh/alt_config" and found[10].listens == [("127.0.0.1", 2222)]
    assert found[20].config == "/etc/ssh/sshd_config" and found[20].binary == "/usr/sbin/sshd"
    assert found[30].config == mk205.WINDOWS_CONFIG
    assert mk205.exposure(found[10], None)[0] is False
    assert mk205.exposure(found[20], True)[0] is True and "MK103" in mk205.exposure(found[20], True)[1]
    assert mk205.exposure(found[30], None)[0] is True  # listening addresses unknown
    assert mk205.find_sshd([], listeners) == []


def test_mk205_passes_when_no_sshd_runs(monkeypatch):
    from mkdoctor.context import Context
    from mkdoctor.options import Options

    monkeypatch.setattr(mk205, "gather", lambda: ([], []))
    result = mk205.run(Context(Options()))
    assert result.status.value == "pass" and "no SSH server" in result.summary


def test_mk205_judges_each_server_with_the_shared_verdicts():
    server = mk205.LocalSshd(1, "/x", "/usr/sbin/sshd", [("0.0.0.0", 22)])
    bad = cfg_of("PermitRootLogin yes\nPasswordAuthentication yes\n")
    verdicts = mk205.judge(server, bad, bad, True, "exposed", RESTART)
    assert [v.status for v in verdicts] == ["fail", "warn"]


def test_setting_fix_for_an_sshd_started_with_its_own_file():
    cfg = cfg_of("PasswordAuthentication yes\n")  # set by a line: change that line
    assert cfg_of("").place == "the server"
    cfg.place, cfg.main = "this computer", "/srv/my sshd/config"
    fix = mk205.judge(mk205.LocalSshd(1, cfg.main, "/usr/sbin/sshd", [("0.0.0.0", 22)]),
                      cfg, cfg, True, "exposed", RESTART)[1].fix
    assert fix.startswith("on this computer, change line 1 of ")
    assert "sudo sshd -t -f '/srv/my sshd/config'" in fix
    default = cfg_of("")  # nothing sets it: no drop-in directory for a private file
    default.place, default.main = "this computer", "/srv/sshd_config"
    fix = mk205.judge(mk205.LocalSshd(1, default.main, "/usr/sbin/sshd", [("0.0.0.0", 22)]),
                      default, default, True, "exposed", RESTART)[0].fix
    assert fix.startswith("on this computer: add the line 'PermitRootLogin no' near the top "
                          "of /srv/sshd_config")
    assert "sshd_config.d" not in fix and "as this computer's" not in fix


# --- integration: the real sshd -------------------------------------------------------------


def run_checks(sb, only: str, *extra: str, netns: str | None = None):
    report, done = json_report(
        "--ssh-config", str(sb.client_dir / "ssh_config"), "--host", "sandbox",
        "--only", only, "--offline", "--sshd-config", str(sb.sshd_config_path), *extra,
        netns=netns)
    return by_id(report), done


@pytest.mark.integration
def test_mk310_dropin_before_main_file_wins(sandbox):
    checks, _ = run_checks(sandbox, "MK310")
    assert checks["MK310"]["status"] == "pass", checks["MK310"]
    assert "evaluated" in " ".join(checks["MK310"]["details"])  # the user may not run sshd -T
    dropin = sandbox.add_dropin("10-root", "PermitRootLogin yes")
    sandbox.reload()
    checks, done = run_checks(sandbox, "MK310")
    mk310 = checks["MK310"]
    assert mk310["status"] == "fail", mk310
    assert str(dropin) in mk310["summary"] and "line 1" in mk310["summary"]
    assert str(dropin) in mk310["fix"]
    assert done.returncode == 1


@pytest.mark.integration
def test_mk310_judges_keywords_for_the_servers_build(sandbox):
    """The stranger's view (MK310) judges each keyword for the sshd that runs there (its
    release from sshd -V, its vendor from ssh -V), not for any build: the sandbox's
    Include (new in OpenSSH 8.2) is no "depends on the sshd build" note on this 9.x
    server, while a keyword that release dropped is named as such."""
    dropin = sandbox.add_dropin("30-old", "UsePrivilegeSeparation sandbox")
    sandbox.reload()
    try:
        checks, _ = run_checks(sandbox, "MK310")
        text = "\n".join(checks["MK310"]["details"])
        assert "depends on the sshd build" not in text, text
        assert "UsePrivilegeSeparation" in text, text
    finally:
        dropin.unlink()
        sandbox.reload()


@pytest.mark.integration
def test_mk312_allow_tcp_forwarding_no(sandbox):
    checks, _ = run_checks(sandbox, "MK312", "--mode", "tunnel")
    assert checks["MK312"]["status"] == "pass", checks["MK312"]
    checks, _ = run_checks(sandbox, "MK312", "--mode", "direct")
    assert checks["MK312"]["status"] == "skip"
    dropin = sandbox.add_dropin("20-fwd", "AllowTcpForwarding no")
    sandbox.reload()
    checks, _ = run_checks(sandbox, "MK312", "--mode", "tunnel")
    assert checks["MK312"]["status"] == "fail"
    assert "AllowTcpForwarding no" in checks["MK312"]["summary"]
    assert str(dropin) in checks["MK312"]["summary"]


def reverse_forward_works(sb) -> bool:
    """Does the real sshd accept ``ssh -R`` for the sandbox user (on a free port)?"""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run(
        ["ssh", "-F", str(sb.client_dir / "ssh_config"), "-o", "BatchMode=yes",
         "-o", "ExitOnForwardFailure=yes", "-R", f"{port}:127.0.0.1:{port}", "sandbox", "true"],
        capture_output=True, text=True, timeout=30)
    return done.returncode == 0


@pytest.mark.integration
@pytest.mark.parametrize("permit", [
    "localhost:{p1} localhost:{p2}", "127.0.0.1:{p1} 127.0.0.1:{p2}", "{p1} {p2}", "localhost:*",
    "{p1}", "any", "none",
])
def test_mk312_permit_listen_agrees_with_a_real_reverse_forward(sandbox_factory, permit):
    """Differential: MK312's verdict on a PermitListen line must be what the real sshd does
    with the reverse forwards the front end's launch command asks for (-R P:127.0.0.1:P)."""
    p1, p2 = free_port_pair()
    line = "PermitListen " + permit.format(p1=p1, p2=p2)
    sb = sandbox_factory(extra_config=line + "\n")
    checks, _ = run_checks(sb, "MK312", "--mode", "tunnel", "--link-ports", f"{p1},{p2}")
    forwards = ["-R" + f"{p}:127.0.0.1:{p}" for p in (p1, p2)]
    real = subprocess.run(
        ["ssh", "-F", str(sb.client_dir / "ssh_config"), "-o", "BatchMode=yes",
         "-o", "ExitOnForwardFailure=yes", *forwards, "sandbox", "true"],
        capture_output=True, text=True, timeout=30)
    assert (checks["MK312"]["status"] == "pass") == (real.returncode == 0), (line, checks["MK312"], real.stderr)


@pytest.mark.integration
@pytest.mark.parametrize("whose", ["ours", "another"])
def test_mk312_match_user(sandbox_factory, whose):
    me = f"mkt{secrets.token_hex(3)}"
    target = me if whose == "ours" else "nobody"
    sb = sandbox_factory(user=me, extra_config=f"Match User {target}\n  AllowTcpForwarding no\n")
    checks, _ = run_checks(sb, "MK312", "--mode", "tunnel", "--link-ports", "31415,31416")
    mk312 = checks["MK312"]
    if whose == "ours":
        assert mk312["status"] == "fail", mk312
        assert "AllowTcpForwarding no" in mk312["summary"]
        line = sb.sshd_config_path.read_text().splitlines().index("  AllowTcpForwarding no") + 1
        assert f"line {line}" in mk312["summary"]
        assert not reverse_forward_works(sb)  # the real sshd agrees
    else:
        assert mk312["status"] == "pass", mk312
        assert reverse_forward_works(sb)


@pytest.mark.integration
def test_mk311_private_then_public_address(netns_factory, sandbox_factory):
    server, client = netns_factory("mks"), netns_factory("mkc")
    ln = link(server, client, "10.77.0.1/24", "10.77.0.2/24")
    sb = sandbox_factory(netns=server.name, address=ln.addr_a)
    sb.add_dropin("30-pw", "PasswordAuthentication yes")
    sb.reload()
    checks, _ = run_checks(sb, "MK311", netns=client.name)
    mk311 = checks["MK311"]
    assert mk311["status"] == "pass", mk311
    assert "private network" in mk311["summary"] and "PasswordAuthentication" in mk311["fix"]
    server.exec(["ip", "addr", "add", "203.0.113.5/32", "dev", "lo"])  # a public address
    checks, _ = run_checks(sb, "MK311", netns=client.name)
    mk311 = checks["MK311"]
    assert mk311["status"] == "warn", mk311
    assert "203.0.113.5" in " ".join(mk311["details"])
    assert "30-pw.conf" in mk311["fix"]


@pytest.mark.integration
def test_oracle_path_when_the_user_may_run_sshd_T(sandbox):
    # A host key the sandbox user owns lets it run sshd -T (sshd refuses a key only when
    # its owner's file is readable by others). ECDSA: the client keeps using the
    # ed25519 host key its known_hosts holds.
    key = sandbox.base_dir / "user_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(key)], check=True)
    os.chown(key, sandbox.uid, sandbox.gid)
    sandbox.add_dropin("00-hostkey", f"HostKey {key}")
    sandbox.add_dropin("10-root", "PermitRootLogin yes")
    sandbox.reload()
    checks, _ = run_checks(sandbox, "MK310,MK312", "--mode", "tunnel")
    assert checks["MK310"]["status"] == "fail", checks["MK310"]
    assert sshd_remote.SOURCE_ORACLE in " ".join(checks["MK310"]["details"])
    assert checks["MK312"]["status"] == "pass"


@pytest.mark.integration
def test_garbage_loop_and_unreadable_files(sandbox):
    d = sandbox.dropin_dir
    d.mkdir(exist_ok=True)
    (d / "10-garbage.conf").write_bytes(bytes(range(1, 256)) + b"\nPermitRootLogin\n")
    (d / "20-loop.conf").write_text(f"Include {d}/20-loop.conf\n")
    secret = d / "30-secret.conf"
    secret.write_text("PermitRootLogin yes\n")
    secret.chmod(0o600)  # root's: the sandbox user cannot read it
    for p in d.iterdir():
        p.chmod(0o644 if p != secret else 0o600)
    checks, _ = run_checks(sandbox, "MK310,MK312", "--mode", "tunnel")
    mk310 = checks["MK310"]
    assert mk310["status"] == "warn", mk310
    text = " ".join(mk310["details"])
    assert "10-garbage.conf" in text and "loop" in text and "Permission denied" in text
    assert "sshd -t" in mk310["fix"]
    # the main file itself unreadable: could not check
    main = sandbox.base_dir / "private_config"
    main.write_text("PermitRootLogin no\n")
    main.chmod(0o600)
    report, _ = json_report("--ssh-config", str(sandbox.client_dir / "ssh_config"), "--host",
                            "sandbox", "--only", "MK310", "--offline", "--sshd-config", str(main))
    mk310 = by_id(report)["MK310"]
    assert mk310["status"] == "skip" and "Permission denied" in mk310["summary"], mk310


@pytest.mark.integration
def test_mk205_judges_a_real_local_sshd(sandbox):
    sandbox.add_dropin("10-root", "PermitRootLogin yes")
    sandbox.reload()
    report, _ = json_report("--only", "MK205", "--offline")
    mk205_result = by_id(report)["MK205"]
    assert mk205_result["status"] == "fail", mk205_result
    details = mk205_result["details"]
    ours = [i for i, d in enumerate(details) if str(sandbox.sshd_config_path) in d and "pid" in d]
    assert ours, details
    following = details[ours[0] + 1]
    assert following.startswith("  fail: root may log in"), details[ours[0]:ours[0] + 4]
    # the fix speaks of this computer and of the file this sshd was started with
    assert mk205_result["fix"].startswith("on this computer"), mk205_result["fix"]
    assert "sshd -t -f " in mk205_result["fix"] and "the server" not in mk205_result["fix"]


@pytest.mark.integration
@pytest.mark.parametrize("with_sudo", [False, True])
def test_sshd_T_is_asked_plain_and_with_sudo_in_one_command_and_a_refusal_once(
        sandbox_factory, with_sudo: bool) -> None:
    """Our view (MK305) and the stranger's (MK310, MK311) ask sshd -T. The sandbox user
    cannot run it (host keys unreadable): without sudo, one ssh command in the whole run
    tries it plain and with sudo -n, and the other views take that refusal (they do not
    ask again); with sudo, each view asks in one ssh command (not one plain and one with
    sudo) and gets sshd's own answer via sudo."""
    box = sandbox_factory(sudo=with_sudo)
    checks, _ = run_checks(box, "MK301,MK302,MK303,MK304,MK305,MK310,MK311", "-v")
    for cid in ("MK305", "MK310", "MK311"):
        assert checks[cid]["status"] in ("pass", "warn"), checks[cid]
    asked = [c for cid in ("MK305", "MK310", "MK311") for c in checks[cid].get("commands", [])
             if '-T -C "$spec"' in c]
    assert all(" SUDO" in c for c in asked), asked  # plain, then sudo -n, in one script
    if with_sudo:
        assert len(asked) >= 2, asked  # each view its own connections
        for cid in ("MK305", "MK310"):
            assert "(the server's own answer) via sudo" in " ".join(checks[cid]["details"]), checks[cid]
    else:
        assert len(asked) == 1, asked
        assert "evaluated" in " ".join(checks["MK310"]["details"])
