"""MK301-MK306 against a real sshd (tests/harness): each check passes on a healthy
sandbox, and each real fault (a file, a mode, an option, a firewall rule, a process on
the port) makes it fail with the right cause. mkdoctor runs as a user runs it.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.harness.netns import Netns
from tests.harness.sshd import SSHSandbox
from tests.helpers import by_id, json_report, run_mkdoctor

pytestmark = pytest.mark.integration

REMOTE = "MK301,MK302,MK303,MK304,MK305,MK306"


def report(sb: SSHSandbox, *args: str, only: str = REMOTE, **kw) -> tuple[dict, dict]:
    """Run mkdoctor against the sandbox, judging the sandbox's own sshd_config: (checks
    by ID, the whole report)."""
    data, done = json_report("--ssh-config", str(sb.client_config), "--host", sb.alias,
                             "--sshd-config", str(sb.sshd_config_path),
                             "--only", only, "--offline", *args, **kw)
    assert done.returncode in (0, 1), done.stderr
    return by_id(data), data


def statuses(checks: dict) -> dict[str, str]:
    return {cid: c["status"] for cid, c in checks.items()}


def as_user(sb: SSHSandbox, path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file in the sandbox user's home, owned by that user."""
    path.write_text(text)
    path.chmod(mode)
    os.chown(path, sb.uid, sb.gid)


def host_key_fingerprint(sb: SSHSandbox) -> str:
    done = subprocess.run(["ssh-keygen", "-lf", str(sb.host_key_pub)], capture_output=True,
                          text=True, check=True, timeout=30)
    return done.stdout.split()[1]


def empty_ssh_config(tmp_path: Path) -> str:
    """An empty client config, so that no test reads the real ~/.ssh/config."""
    path = tmp_path / "ssh_config"
    path.write_text("")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- all pass -----------------------------------------------------------------------------


def test_healthy_sandbox_passes_every_remote_check(sandbox: SSHSandbox) -> None:
    checks, data = report(sandbox)
    assert statuses(checks) == dict.fromkeys(REMOTE.split(","), "pass"), checks
    assert "OpenSSH_" in checks["MK302"]["summary"]
    assert host_key_fingerprint(sandbox) in checks["MK303"]["summary"]
    assert "authorized_keys line 1" in checks["MK305"]["summary"]


# --- MK301 / MK302 --------------------------------------------------------------------------


def test_unresolvable_host(tmp_path: Path) -> None:
    data, done = json_report("--ssh-config", empty_ssh_config(tmp_path), "--host",
                             "nonexistent.invalid", "--only", REMOTE, "--offline", "--timeout", "3")
    checks = by_id(data)
    assert done.returncode == 1
    assert checks["MK301"]["status"] == "fail"
    assert "nonexistent.invalid" in checks["MK301"]["summary"]
    assert checks["MK301"]["fix"]
    for cid in ("MK302", "MK303", "MK304", "MK305", "MK306"):
        assert checks[cid]["status"] == "skip", checks[cid]
    assert "MK301" in checks["MK302"]["summary"]


def test_nothing_listening_is_refused(sandbox: SSHSandbox) -> None:
    sandbox.stop()  # the port is free now: a real "connection refused"
    checks, _ = report(sandbox)
    assert checks["MK301"]["status"] == "pass"
    assert checks["MK302"]["status"] == "fail"
    assert "connection refused" in checks["MK302"]["summary"]
    assert "MK302" in checks["MK304"]["summary"] and checks["MK304"]["status"] == "skip"


def test_http_server_on_the_port_is_not_ssh(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.05)
        data, _ = json_report("--ssh-config", empty_ssh_config(tmp_path), "--host",
                              f"127.0.0.1:{port}", "--only", "MK301,MK302", "--offline")
    finally:
        server.terminate()
        server.wait(timeout=10)
    mk302 = by_id(data)["MK302"]
    assert mk302["status"] == "fail"
    assert "not SSH" in mk302["summary"]
    assert any("web server" in d for d in mk302["details"]), mk302


def test_dropped_packets_time_out_within_the_step_timeout(
        netns_factory: Callable[..., Netns], sandbox_factory: Callable[..., SSHSandbox]) -> None:
    ns = netns_factory()
    sb = sandbox_factory(netns=ns.name)
    ns.iptables("-A", "INPUT", "-p", "tcp", "--dport", str(sb.port), "-j", "DROP")
    started = time.monotonic()
    checks, _ = report(sb, "--timeout", "2", netns=ns.name)
    elapsed = time.monotonic() - started
    mk302 = checks["MK302"]
    assert mk302["status"] == "fail"
    assert "timed out" in mk302["summary"]
    assert mk302["duration_s"] <= 2 + 1, mk302
    for cid in ("MK303", "MK304", "MK305", "MK306"):
        assert checks[cid]["status"] == "skip", checks[cid]
    assert elapsed < 15, f"the whole run took {elapsed:.1f} s"


def _server_elsewhere(netns_factory: Callable[..., Netns],
                      sandbox_factory: Callable[..., SSHSandbox]) -> tuple[Netns, Netns, SSHSandbox]:
    """A laptop namespace linked to a server namespace where the sandbox sshd runs."""
    from tests.harness.netns import link

    laptop, work = netns_factory("mklap"), netns_factory("mkwks")
    link(laptop, work, "10.88.0.1/24", "10.88.0.2/24")
    return laptop, work, sandbox_factory(netns=work.name, address="10.88.0.2")


@pytest.mark.parametrize("how", ["icmp-host-unreachable", "unreachable route"])
def test_no_route_to_host(netns_factory: Callable[..., Netns],
                          sandbox_factory: Callable[..., SSHSandbox], how: str) -> None:
    """EHOSTUNREACH for real: the server's firewall answers the SYN with ICMP host
    unreachable, or the laptop's routing table says the host is unreachable."""
    laptop, work, sb = _server_elsewhere(netns_factory, sandbox_factory)
    assert report(sb, "--timeout", "3", only="MK301,MK302", netns=laptop.name)[0][
        "MK302"]["status"] == "pass"
    if how == "icmp-host-unreachable":
        work.iptables("-A", "INPUT", "-p", "tcp", "--dport", str(sb.port), "-j", "REJECT",
                      "--reject-with", "icmp-host-unreachable")
    else:
        laptop.exec(["ip", "route", "add", "unreachable", "10.88.0.2/32"])
    started = time.monotonic()
    checks, _ = report(sb, "--timeout", "5", netns=laptop.name)
    mk302 = checks["MK302"]
    assert mk302["status"] == "fail", mk302
    assert mk302["summary"] == f"10.88.0.2 port {sb.port}: no route to host"
    assert mk302["details"] == ["no route to host 10.88.0.2"]
    assert "VPN" in mk302["fix"]
    assert mk302["duration_s"] < 4, mk302  # told at once, not after the timeout
    assert checks["MK304"]["status"] == "skip" and "MK302" in checks["MK304"]["summary"]
    assert time.monotonic() - started < 15


def test_network_unreachable(netns_factory: Callable[..., Netns],
                             sandbox_factory: Callable[..., SSHSandbox]) -> None:
    """ENETUNREACH for real: mkdoctor runs in a namespace whose routing table has no
    route to the server's network (only loopback)."""
    _, _, sb = _server_elsewhere(netns_factory, sandbox_factory)
    isolated = netns_factory("mkiso")
    checks, _ = report(sb, "--timeout", "5", netns=isolated.name)
    mk302 = checks["MK302"]
    assert mk302["status"] == "fail", mk302
    assert mk302["summary"] == f"10.88.0.2 port {sb.port}: network unreachable"
    assert mk302["details"] == ["network unreachable for 10.88.0.2"]
    assert "no route to that network" in mk302["fix"]
    assert mk302["duration_s"] < 4, mk302
    assert checks["MK304"]["status"] == "skip"


# --- MK303 ----------------------------------------------------------------------------------


def test_unknown_host_key(sandbox: SSHSandbox) -> None:
    sandbox.known_hosts.write_text("")
    checks, _ = report(sandbox)
    mk303 = checks["MK303"]
    assert mk303["status"] == "fail"
    assert host_key_fingerprint(sandbox) in mk303["summary"]
    assert f"ssh-keyscan -p {sandbox.port} 127.0.0.1" in mk303["fix"]
    assert "ssh-keygen -lf" in mk303["fix"] and str(sandbox.known_hosts) in mk303["fix"]
    assert checks["MK304"]["status"] == "skip" and "MK303" in checks["MK304"]["summary"]
    assert sandbox.known_hosts.read_text() == ""  # never recorded behind the user's back


def test_changed_host_key_fails_loudly_and_changes_nothing(sandbox: SSHSandbox, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
                   check=True, timeout=30)
    keytype, blob = (tmp_path / "other.pub").read_text().split()[:2]
    text = f"[127.0.0.1]:{sandbox.port} {keytype} {blob}\n"
    sandbox.known_hosts.write_text(text)
    # What ssh itself says about it:
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in sandbox.ssh("true").stderr
    checks, _ = report(sandbox)
    mk303 = checks["MK303"]
    assert mk303["status"] == "fail"
    assert "CHANGED" in mk303["summary"] and "man-in-the-middle" in mk303["summary"]
    assert "ssh-keygen -R" in mk303["fix"] and "do NOT log in" in mk303["fix"]
    assert host_key_fingerprint(sandbox) in mk303["summary"]
    assert sandbox.known_hosts.read_text() == text


def test_recorded_types_only_are_fetched_and_the_verdict_is_sshs(sandbox: SSHSandbox,
                                                                  tmp_path: Path) -> None:
    """MK303 fetches only the key types known_hosts records (one key exchange each). The
    server has ed25519 and RSA keys; known_hosts records the RSA one only, so ssh
    negotiates RSA and logs in: MK303 passes on the RSA key, from one ``-t rsa`` scan."""
    rsa = tmp_path / "ssh_host_rsa_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)],
                   check=True, timeout=60)
    sandbox.add_dropin("rsa", f"HostKey {sandbox.host_key}\nHostKey {rsa}")
    sandbox.reload()
    keytype, blob = (tmp_path / "ssh_host_rsa_key.pub").read_text().split()[:2]
    sandbox.known_hosts.write_text(f"[127.0.0.1]:{sandbox.port} {keytype} {blob}\n")
    assert sandbox.ssh("true").returncode == 0  # what ssh itself makes of it
    checks, _ = report(sandbox, "-v", only="MK301,MK302,MK303")
    mk303 = checks["MK303"]
    assert mk303["status"] == "pass" and mk303["summary"].startswith("ssh-rsa "), mk303
    scans = [c for c in mk303["commands"] if c.startswith("ssh-keyscan")]
    assert len(scans) == 1 and " -t rsa " in scans[0], scans


def test_recorded_type_the_server_no_longer_has_is_judged_on_all_its_keys(
        sandbox: SSHSandbox, tmp_path: Path) -> None:
    """known_hosts records an RSA key, the server has only ed25519: the scan of the
    recorded type finds nothing, so every type is fetched and the verdict is ssh's
    (keys of other types only: Host key verification failed), not "could not fetch"."""
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f",
                    str(tmp_path / "old")], check=True, timeout=60)
    keytype, blob = (tmp_path / "old.pub").read_text().split()[:2]
    sandbox.known_hosts.write_text(f"[127.0.0.1]:{sandbox.port} {keytype} {blob}\n")
    assert "Host key verification failed" in sandbox.ssh("true").stderr
    checks, _ = report(sandbox, "-v", only="MK301,MK302,MK303")
    mk303 = checks["MK303"]
    assert mk303["status"] == "fail", mk303
    assert "differ from every key recorded" in mk303["summary"], mk303
    assert host_key_fingerprint(sandbox) in mk303["summary"]
    scans = [c for c in mk303["commands"] if c.startswith("ssh-keyscan")]
    assert len(scans) == 2 and " -t rsa " in scans[0] and " -t " not in scans[1], scans


@pytest.mark.parametrize("server_has_rsa", [True, False])
def test_setup_reads_the_host_key_as_mk303_does(sandbox: SSHSandbox, tmp_path: Path,
                                                server_has_rsa: bool) -> None:
    """Setup's host-key step (wizard.remote.probe_host_key) fetches the recorded types
    only, as MK303 does: known_hosts records an RSA key; a server that has it gives
    "known" from one ``-t rsa`` scan, one that has only ed25519 gives ssh's verdict
    ("other-types") after a second scan of every type."""
    from mkdoctor.proc import ProcessRunner
    from mkdoctor.wizard import remote

    rsa = tmp_path / "ssh_host_rsa_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)],
                   check=True, timeout=60)
    if server_has_rsa:
        sandbox.add_dropin("rsa", f"HostKey {sandbox.host_key}\nHostKey {rsa}")
        sandbox.reload()
    keytype, blob = (tmp_path / "ssh_host_rsa_key.pub").read_text().split()[:2]
    sandbox.known_hosts.write_text(f"[127.0.0.1]:{sandbox.port} {keytype} {blob}\n")
    runner, ran = ProcessRunner(), []

    def run(argv):  # noqa: ANN001, ANN202
        ran.append(list(argv))
        return runner.run(argv, 20)

    cfg = remote.ssh_g(run, sandbox.alias, sandbox.client_config)
    state = remote.probe_host_key(run, cfg, 5, sandbox.alias, sandbox.client_config)
    scans = [" ".join(a) for a in ran if a[0] == "ssh-keyscan"]
    if server_has_rsa:
        assert state.verdict == "known" and state.key.keytype == "ssh-rsa", state
        assert len(scans) == 1 and " -t rsa " in scans[0], scans
    else:
        assert state.verdict == "other-types", state
        assert len(scans) == 2 and " -t rsa " in scans[0] and " -t " not in scans[1], scans


def test_hashed_known_hosts_entry_still_matches(sandbox: SSHSandbox) -> None:
    subprocess.run(["ssh-keygen", "-H", "-f", str(sandbox.known_hosts)], check=True,
                   capture_output=True, timeout=30)
    assert sandbox.known_hosts.read_text().startswith("|1|")
    checks, _ = report(sandbox, only="MK301,MK302,MK303")
    assert checks["MK303"]["status"] == "pass", checks["MK303"]
    assert "(hashed)" in checks["MK303"]["summary"]


def test_revoked_host_key(sandbox: SSHSandbox) -> None:
    keytype, blob = sandbox.host_key_pub.read_text().split()[:2]
    name = f"[127.0.0.1]:{sandbox.port}"
    sandbox.known_hosts.write_text(f"@revoked {name} {keytype} {blob}\n{name} {keytype} {blob}\n")
    assert sandbox.ssh("true").returncode == 255  # ssh refuses a revoked key
    checks, _ = report(sandbox, only="MK301,MK302,MK303")
    assert checks["MK303"]["status"] == "fail"
    assert "REVOKED" in checks["MK303"]["summary"] and "line 1" in checks["MK303"]["summary"]


def test_proxyjump_skips_host_key_check_and_still_logs_in(sandbox: SSHSandbox) -> None:
    """Through ProxyJump (here: the sandbox is its own jump host) MK303 cannot fetch the
    key directly and says so; its skip must not block MK304, which logs in."""
    config = sandbox.client_config.read_text()
    jump = config.replace("Host sandbox", "Host jumpbox", 1)
    sandbox.client_config.write_text(
        config.replace("Host sandbox\n", "Host sandbox\n    ProxyJump jumpbox\n", 1) + jump)
    checks, _ = report(sandbox, only="MK301,MK302,MK303,MK304")
    assert "first hop" in checks["MK301"]["summary"] and checks["MK301"]["status"] == "pass"
    assert checks["MK303"]["status"] == "skip" and "ProxyJump" in checks["MK303"]["summary"]
    assert checks["MK304"]["status"] == "pass", checks["MK304"]


def test_proxyjump_alias_with_port_resolves_the_alias_hostname(sandbox: SSHSandbox) -> None:
    """``ProxyJump jump.alias.invalid:PORT`` where the jump host is a Host alias whose
    HostName is the real address: ssh connects to that HostName on PORT (the alias's own
    Port is overridden), so MK301 resolves the HostName and MK302 tries PORT."""
    config = sandbox.client_config.read_text()
    jump = (config.replace("Host sandbox", "Host jump.alias.invalid", 1)
            .replace(f"Port {sandbox.port}", "Port 1", 1))
    sandbox.client_config.write_text(config.replace(
        "Host sandbox\n", f"Host sandbox\n    ProxyJump jump.alias.invalid:{sandbox.port}\n", 1) + jump)
    assert sandbox.ssh("true").returncode == 0  # what real ssh does with it
    checks, _ = report(sandbox, only="MK301,MK302,MK303,MK304")
    mk301 = checks["MK301"]
    assert mk301["status"] == "pass", mk301
    assert "127.0.0.1 (first hop, ProxyJump jump.alias.invalid:" in mk301["summary"]
    assert checks["MK302"]["status"] == "pass", checks["MK302"]
    assert checks["MK304"]["status"] == "pass", checks["MK304"]


@pytest.mark.parametrize("value", ["nosuchjump.invalid", "nosuchjump.invalid:2222"])
def test_unresolvable_jump_host_is_named(sandbox: SSHSandbox, value: str) -> None:
    config = sandbox.client_config.read_text()
    sandbox.client_config.write_text(
        config.replace("Host sandbox\n", f"Host sandbox\n    ProxyJump {value}\n", 1))
    checks, _ = report(sandbox, "--timeout", "3", only="MK301,MK302,MK303,MK304")
    mk301 = checks["MK301"]
    assert mk301["status"] == "fail", mk301
    assert mk301["summary"] == "nosuchjump.invalid does not resolve: no such name"
    assert "ProxyJump" in mk301["fix"] and "nosuchjump.invalid" in mk301["fix"]
    assert checks["MK302"]["status"] == "skip" and "MK301" in checks["MK302"]["summary"]


# --- MK304 ----------------------------------------------------------------------------------


def test_key_not_installed(sandbox: SSHSandbox) -> None:
    as_user(sandbox, sandbox.authorized_keys_path, "")
    checks, _ = report(sandbox)
    mk304 = checks["MK304"]
    assert mk304["status"] == "fail"
    assert "Permission denied (publickey)" in mk304["summary"]
    assert "authorized_keys" in mk304["fix"]
    assert checks["MK305"]["status"] == "skip" and checks["MK306"]["status"] == "skip"


@pytest.mark.parametrize("which, mode", [(".ssh", 0o777), ("authorized_keys", 0o666)])
def test_strictmodes_refuses_world_writable(sandbox: SSHSandbox, which: str, mode: int) -> None:
    path = sandbox.home / ".ssh" if which == ".ssh" else sandbox.authorized_keys_path
    path.chmod(mode)
    checks, _ = report(sandbox, only="MK304,MK305")
    mk304 = checks["MK304"]
    assert mk304["status"] == "fail"
    assert "Permission denied (publickey)" in mk304["summary"]
    assert "bad ownership or modes" in sandbox.log_text()  # what sshd says, to its log only
    # From the client this looks exactly like a missing key, so the fix gives both, the
    # modes first: the command that makes them safe, through the same ssh config.
    modes = (f"ssh -F {sandbox.client_config} {sandbox.alias} "
             "'chmod go-w ~ && chmod 700 ~/.ssh && chmod 600 ~/.ssh/authorized_keys'")
    assert mk304["fix"].startswith("if your key is already in ~/.ssh/authorized_keys on the "
                                   "server, sshd refuses it for unsafe modes (StrictModes)")
    assert modes in mk304["fix"]
    assert mk304["fix"].index(modes) < mk304["fix"].index("install your public key")
    # and what that command runs on the server (run here on the sandbox home: the
    # sandbox user exists only inside sshd's namespace) makes the login work
    script = shlex.split(modes)[-1]
    subprocess.run(["sh", "-c", script], check=True, timeout=30,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(sandbox.home)})
    assert report(sandbox, only="MK304")[0]["MK304"]["status"] == "pass"


# --- MK305 ----------------------------------------------------------------------------------


def key_line(sb: SSHSandbox) -> str:
    return sb.client_key_pub.read_text().strip()


def test_group_writable_authorized_keys(sandbox: SSHSandbox) -> None:
    """0664: upstream sshd refuses it; Debian's user-group-modes patch accepts it for a
    private group. Whatever this sshd does, MK304 agrees and MK305 warns."""
    sandbox.authorized_keys_path.chmod(0o664)
    accepted = sandbox.ssh("true").returncode == 0
    checks, _ = report(sandbox, only="MK304,MK305")
    if not accepted:
        assert checks["MK304"]["status"] == "fail"
        return
    assert checks["MK304"]["status"] == "pass"
    assert checks["MK305"]["status"] == "warn", checks["MK305"]
    assert "group-writable" in checks["MK305"]["summary"]
    assert "chmod go-w" in checks["MK305"]["fix"]


def test_world_writable_file_accepted_only_with_strictmodes_off(sandbox: SSHSandbox) -> None:
    sandbox.add_dropin("strict", "StrictModes no")
    sandbox.reload()
    sandbox.authorized_keys_path.chmod(0o666)
    checks, _ = report(sandbox, only="MK304,MK305")
    assert checks["MK304"]["status"] == "pass"
    assert checks["MK305"]["status"] == "warn", checks["MK305"]
    assert "anyone on the server could add a key" in checks["MK305"]["summary"]


@pytest.mark.parametrize("options, mode, status", [
    ("no-port-forwarding", "tunnel", "fail"),
    ("no-port-forwarding", "direct", "warn"),
    ("restrict", "tunnel", "fail"),
    ("restrict,port-forwarding", "tunnel", "pass"),
    ('permitlisten="localhost:31415"', "tunnel", "fail"),
    ('permitlisten="localhost:31415",permitlisten="localhost:31416"', "tunnel", "pass"),
    ('from="10.99.0.0/16"', "tunnel", None),  # sshd refuses the key from 127.0.0.1
])
def test_key_options(sandbox: SSHSandbox, options: str, mode: str, status: str | None) -> None:
    as_user(sandbox, sandbox.authorized_keys_path, f"{options} {key_line(sandbox)}\n")
    forward = sandbox.ssh("true", options=["-o", "ExitOnForwardFailure=yes",
                                           "-R", "31416:127.0.0.1:9"])
    checks, _ = report(sandbox, "--mode", mode, only="MK304,MK305")
    if status is None:
        assert forward.returncode == 255 and checks["MK304"]["status"] == "fail"
        return
    mk305 = checks["MK305"]
    assert mk305["status"] == status, mk305
    # What sshd really does with the tunnel's second forward:
    assert (forward.returncode == 0) == (status == "pass" or mode == "direct" and "restrict" not in options
                                         and "no-port" not in options), forward.stderr
    if status != "pass":
        assert "line 1" in mk305["summary"] and mk305["fix"]


def test_forced_command_fails(sandbox: SSHSandbox) -> None:
    """command= on our key's line: the master logs in (it runs no command), but every
    command mkdoctor sends is replaced. sshd tells a client that logged in (ssh -v,
    "Remote: FILE:N: key options: ... command") which line it used: MK305 names it."""
    text = (f'from="10.99.0.0/16" {key_line(sandbox)}\n'  # refused from 127.0.0.1: skipped
            f'command="echo forced" {key_line(sandbox)}\n')
    as_user(sandbox, sandbox.authorized_keys_path, text)
    checks, _ = report(sandbox, only="MK304,MK305,MK306")
    assert checks["MK304"]["status"] == "pass"  # the master runs no command
    mk305 = checks["MK305"]
    assert mk305["status"] == "fail", mk305
    assert mk305["summary"].startswith("a forced command replaces every command: command=")
    assert f"{sandbox.authorized_keys_path} line 2" in mk305["summary"]
    assert f'remove command="..." from {sandbox.authorized_keys_path} line 2' in mk305["fix"]
    assert any("echo" not in d and "forced" in d for d in mk305["details"])  # what ran instead
    assert checks["MK306"]["status"] == "fail"
    assert any("forced" in d for d in checks["MK306"]["details"])


@pytest.mark.parametrize("cause", ["nologin shell", "ForceCommand"])
def test_commands_that_never_run_fail_with_the_likely_causes(
        sandbox_factory: Callable[..., SSHSandbox], cause: str) -> None:
    """No command= on the key line, but a login shell that runs nothing (nologin) or
    sshd's ForceCommand: MK304 logs in, no command runs, and the server's -v lines name
    no forced key line (nor can the server's configuration be read)."""
    if cause == "ForceCommand":
        sb = sandbox_factory()
        sb.add_dropin("force", "ForceCommand echo forced")
        sb.reload()
    else:
        sb = sandbox_factory(login_shell=next(p for p in ("/usr/sbin/nologin", "/sbin/nologin")
                                              if os.path.exists(p)))
    checks, _ = report(sb, only="MK304,MK305")
    assert checks["MK304"]["status"] == "pass"
    mk305 = checks["MK305"]
    assert mk305["status"] == "fail", mk305
    assert mk305["summary"].startswith("remote commands do not run")
    assert "getent passwd" in mk305["fix"] and "command=" in mk305["fix"]


def test_from_refusing_line_is_skipped_like_sshd_does(sandbox: SSHSandbox) -> None:
    """sshd skips a line whose from= refuses the client and uses the next line with the
    key: MK305 judges that next line and names the skipped one in a note."""
    as_user(sandbox, sandbox.authorized_keys_path,
            f'from="10.99.0.0/16" {key_line(sandbox)}\n{key_line(sandbox)}\n')
    checks, _ = report(sandbox, "--mode", "tunnel", only="MK304,MK305")
    assert checks["MK304"]["status"] == "pass"
    mk305 = checks["MK305"]
    assert mk305["status"] == "pass", mk305
    assert "authorized_keys line 2" in mk305["summary"]
    assert any('line 1 also holds our key, but its from="10.99.0.0/16" refuses 127.0.0.1' in d
               for d in mk305["details"]), mk305["details"]


def test_from_refusing_line_then_no_port_forwarding(
        netns_factory: Callable[..., Netns], sandbox_factory: Callable[..., SSHSandbox]) -> None:
    """The line sshd really uses has no-port-forwarding: MK305 fails naming it, and the
    real reverse forward of MK403 (the server in its own namespace) is refused too."""
    from tests.harness.netns import link

    laptop, work = netns_factory("mklap"), netns_factory("mkwks")
    link(laptop, work, "10.88.0.1/24", "10.88.0.2/24")
    sb = sandbox_factory(netns=work.name, address="10.88.0.2")
    as_user(sb, sb.authorized_keys_path,
            f'from="10.99.0.0/16" {key_line(sb)}\nno-port-forwarding {key_line(sb)}\n')
    checks, _ = report(sb, "--mode", "tunnel", "--link-ports", "31517,31518", "--timeout", "3",
                       only="MK301,MK302,MK303,MK304,MK305,MK403", netns=laptop.name)
    assert checks["MK304"]["status"] == "pass"
    mk305 = checks["MK305"]
    assert mk305["status"] == "fail", mk305
    assert mk305["summary"].startswith("~/.ssh/authorized_keys line 2 has no-port-forwarding")
    assert "remove no-port-forwarding from ~/.ssh/authorized_keys line 2" in mk305["fix"]
    assert checks["MK403"]["status"] == "fail", checks["MK403"]
    assert "refused the reverse forward" in checks["MK403"]["summary"]


def test_garbage_lines_do_not_hide_the_key(sandbox: SSHSandbox) -> None:
    text = ("this is not a key\n"
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBroken\n"
            "# a comment\n"
            f"{key_line(sandbox)}\n")
    as_user(sandbox, sandbox.authorized_keys_path, text)
    checks, _ = report(sandbox, only="MK304,MK305")
    mk305 = checks["MK305"]
    assert mk305["status"] == "warn", mk305
    everything = mk305["summary"] + "\n" + "\n".join(mk305["details"])
    assert "line 1 is not a valid key line" in everything
    assert "line 2 is not a valid key line" in everything
    assert "authorized_keys line 4" in everything  # our key, found after them


def test_key_only_in_authorized_keys2(sandbox: SSHSandbox) -> None:
    as_user(sandbox, sandbox.authorized_keys_path, "")
    as_user(sandbox, sandbox.home / ".ssh" / "authorized_keys2", key_line(sandbox) + "\n")
    checks, _ = report(sandbox, only="MK304,MK305")
    assert checks["MK304"]["status"] == "pass"
    assert checks["MK305"]["status"] == "warn"
    assert "deprecated" in checks["MK305"]["summary"]
    assert "authorized_keys2" in checks["MK305"]["summary"]


# --- MK306 ----------------------------------------------------------------------------------


def test_noisy_bashrc(sandbox: SSHSandbox) -> None:
    as_user(sandbox, sandbox.home / ".bashrc", "# my bashrc\necho hello\n", 0o644)
    # bash (the sandbox user's shell) reads ~/.bashrc for `ssh host command` here:
    assert sandbox.ssh("true").stdout == "hello\n"
    checks, _ = report(sandbox, only="MK304,MK306")
    mk306 = checks["MK306"]
    assert mk306["status"] == "fail"
    assert "~/.bashrc line 2" in mk306["summary"]
    assert "[[ $- == *i* ]] || return" in mk306["fix"]
    assert any("hello" in d for d in mk306["details"])


def test_stty_error_on_stderr_is_noise_too(sandbox: SSHSandbox) -> None:
    as_user(sandbox, sandbox.home / ".bashrc", "stty -echo\n", 0o644)
    checks, _ = report(sandbox, only="MK304,MK306")
    mk306 = checks["MK306"]
    assert mk306["status"] == "fail"
    assert "~/.bashrc line 1" in mk306["summary"]
    assert any("stty" in d for d in mk306["details"])


def test_guarded_bashrc_is_clean(sandbox: SSHSandbox) -> None:
    as_user(sandbox, sandbox.home / ".bashrc", "[[ $- == *i* ]] || return\necho hello\n", 0o644)
    checks, _ = report(sandbox, only="MK304,MK306")
    assert checks["MK306"]["status"] == "pass", checks["MK306"]


def test_the_servers_own_authorized_keys_file_is_read(sandbox: SSHSandbox) -> None:
    """AuthorizedKeysFile comes from the server's effective configuration (here a
    drop-in), with %u expanded: the key is found where sshd really looks."""
    sandbox.add_dropin("akf", "AuthorizedKeysFile .ssh/keys_of_%u")
    sandbox.reload()
    as_user(sandbox, sandbox.authorized_keys_path, "")
    as_user(sandbox, sandbox.home / ".ssh" / f"keys_of_{sandbox.user}", key_line(sandbox) + "\n")
    checks, _ = report(sandbox, only="MK304,MK305")
    assert checks["MK304"]["status"] == "pass"
    mk305 = checks["MK305"]
    assert mk305["status"] == "pass", mk305
    assert f"~/.ssh/keys_of_{sandbox.user} line 1" in mk305["summary"]


def test_verbose_shows_the_remote_script_not_its_encoding(sandbox: SSHSandbox) -> None:
    """-v lists each remote command as the sh script it runs (what travels is an encoded
    form that every login shell reads alike: mkdoctor.openssh.session.login_shell_command)."""
    done = run_mkdoctor("--ssh-config", str(sandbox.client_config), "--host", sandbox.alias,
                        "--only", "MK304,MK306", "--offline", "-v", "--no-color")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.endswith(f"-- {sandbox.alias} <remote sh script>"))
    assert lines[at + 1].strip() == """sh -c 'printf "%s\\n" "${SHELL:-}" "$HOME"'"""
    assert "printf %b" not in done.stdout
