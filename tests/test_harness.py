"""Tests of the integration-test harness itself (tests/harness, tests/conftest.py).

All real: a real sshd, real ssh, real network namespaces and iptables. No mocks.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import ROOT, skip_or_fail
from tests.harness.netns import NatTopology, Netns, link, tcp_connect
from tests.harness.procs import cmdline, pids_of_uid, pids_with_env
from tests.harness.sshd import SSHD, SSHSandbox, SSHSandboxError

pytestmark = pytest.mark.integration

# A one-connection-at-a-time TCP server that answers "ok", printed port first.
TCP_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); s.settimeout(60)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
""")

# An HTTP server whose body is the client's address as the server sees it.
WHATS_MY_IP = textwrap.dedent("""
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = self.client_address[0].encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body)))
            self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
""")


def wait_listening(ns: Netns, host: str, port: int, timeout: float = 10) -> None:
    """Wait until something accepts TCP on host:port inside ``ns``."""
    deadline = time.monotonic() + timeout
    while not tcp_connect(ns, host, port, timeout=1):
        assert time.monotonic() < deadline, f"{host}:{port} not listening in {ns}"
        time.sleep(0.1)


def require_per_test_home(box: SSHSandbox) -> None:
    if not box.per_test_home:
        skip_or_fail("needs root: the sandbox home is the real user's home without root")


# ---------------------------------------------------------------- sshd


def test_sandbox_login_as_its_user(no_leaked_processes: None, sandbox: SSHSandbox) -> None:
    done = sandbox.ssh("id", "-un")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == sandbox.user
    assert sandbox.accepted_count() == 1
    assert f"Accepted publickey for {sandbox.user}" in sandbox.log_text()


def test_client_config_works_with_plain_ssh(sandbox: SSHSandbox) -> None:
    """The spec'd command line, without the harness's helper options."""
    done = subprocess.run(
        ["ssh", "-F", str(sandbox.client_config), "-o", "BatchMode=yes", "sandbox", "--",
         "id", "-un"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout.strip()) == (0, sandbox.user), done.stderr
    known = sandbox.known_hosts.read_text()
    assert known.startswith(f"[{sandbox.address}]:{sandbox.port} ssh-ed25519 ")
    assert stat.S_IMODE(sandbox.client_key.stat().st_mode) == 0o600


def test_remote_user_is_dedicated_and_home_is_per_sandbox(sandbox: SSHSandbox) -> None:
    require_per_test_home(sandbox)
    done = sandbox.ssh('echo "$HOME"; id -u; id -g; echo "$SHELL"', check=True)
    home, uid, gid, shell = done.stdout.split()
    assert (Path(home), int(uid), int(gid), shell) == (sandbox.home, sandbox.uid, sandbox.gid,
                                                       "/bin/bash")
    assert 20000 <= sandbox.uid < 60000
    assert sandbox.home.is_relative_to(sandbox.base_dir)
    # The real /etc was not touched.
    assert sandbox.user not in Path("/etc/passwd").read_text()
    st = sandbox.home.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (sandbox.uid, sandbox.gid, 0o755)
    ssh_dir = (sandbox.home / ".ssh").stat()
    assert (ssh_dir.st_uid, stat.S_IMODE(ssh_dir.st_mode)) == (sandbox.uid, 0o700)
    keys = sandbox.authorized_keys_path.stat()
    assert (keys.st_uid, stat.S_IMODE(keys.st_mode)) == (sandbox.uid, 0o600)


def test_effective_config_is_strict(sandbox: SSHSandbox) -> None:
    spec = f"user={sandbox.user},host=x,addr=127.0.0.1"
    done = subprocess.run([SSHD, "-T", "-f", str(sandbox.sshd_config_path), "-C", spec],
                          capture_output=True, text=True, timeout=30, check=True)
    lines = set(done.stdout.splitlines())
    assert "permitrootlogin no" in lines
    assert "usepam no" in lines
    assert f"listenaddress 127.0.0.1:{sandbox.port}" in lines
    if sandbox.is_root:
        assert "strictmodes yes" in lines
    assert sandbox.sshd_config_path.read_text().startswith(
        f"Include {sandbox.dropin_dir}/*.conf\n")


def test_strict_modes_make_a_world_writable_ssh_dir_fail(sandbox: SSHSandbox) -> None:
    require_per_test_home(sandbox)
    assert sandbox.ssh("true").returncode == 0
    (sandbox.home / ".ssh").chmod(0o777)
    done = sandbox.ssh("true")
    assert done.returncode == 255
    assert "Permission denied" in done.stderr
    sandbox.wait_for_log(r"Authentication refused: bad ownership or modes for directory")
    assert sandbox.accepted_count() == 1


def test_dropin_overrides_main_config_after_reload(sandbox: SSHSandbox) -> None:
    assert sandbox.ssh("true").returncode == 0
    pid, port = sandbox.pid, sandbox.port
    sandbox.add_dropin("10-nopubkey", "PubkeyAuthentication no")
    assert sandbox.effective_config()["pubkeyauthentication"] == ["no"]
    assert sandbox.ssh("true").returncode == 0  # not yet reloaded
    sandbox.reload()
    assert (sandbox.pid, sandbox.port) == (pid, port)
    done = sandbox.ssh("true")
    assert done.returncode == 255 and "Permission denied" in done.stderr
    assert sandbox.accepted_count() == 2


def test_invalid_config_is_reported_with_sshd_output(sandbox: SSHSandbox) -> None:
    sandbox.add_dropin("99-bad", "NoSuchKeyword yes")
    with pytest.raises(SSHSandboxError, match="NoSuchKeyword|Bad configuration option"):
        sandbox.reload()
    assert sandbox.running
    assert sandbox.ssh("true").returncode == 0


def _tree(path: Path) -> dict[str, str]:
    """path -> sha256 of every file (digests only: /etc/ssh holds private host keys)."""
    import hashlib

    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def test_sudo_sandbox_confines_root_to_its_own_etc_ssh_and_run(
        no_leaked_processes: None, sandbox_factory: Callable[..., SSHSandbox]) -> None:
    """sudo=True: the user is root through sudo, but /etc/ssh, /etc/sudoers and /run are
    the sandbox's: root's writes there and a reload through the pid file stay inside."""
    if os.geteuid() != 0:
        skip_or_fail("sudo sandboxes need root")
    real_etc_ssh = _tree(Path("/etc/ssh"))
    real_run = sorted(os.listdir("/run"))
    box = sandbox_factory(sudo=True)
    assert box.sshd_config_path == box.etc_ssh_dir / "sshd_config"
    assert box.sshd_config_path.read_text().startswith("Include /etc/ssh/sshd_config.d/*.conf\n")
    done = box.ssh("sudo -n id -u && sudo -n sh -c 'echo PermitRootLogin no > "
                   "/etc/ssh/sshd_config.d/40-root.conf && touch /run/root-was-here && "
                   "sshd -t && kill -HUP $(cat /run/sshd.pid) && echo reloaded'")
    assert done.stdout.split() == ["0", "reloaded"], done.stdout + done.stderr
    box.wait_for_log("Received SIGHUP")
    box.wait_for_log("Server listening on", count=2)
    assert (box.dropin_dir / "40-root.conf").read_text() == "PermitRootLogin no\n"
    assert _tree(Path("/etc/ssh")) == real_etc_ssh  # the real ones: untouched
    assert sorted(os.listdir("/run")) == real_run and not Path("/run/root-was-here").exists()
    assert oct(box.sudoers_path.stat().st_mode & 0o777) == "0o440"
    # only the sandbox user: another sandbox without sudo=True may not
    plain = sandbox_factory()
    assert "password is required" in plain.ssh("sudo -n true").stderr
    assert box.ssh("true").returncode == 0


def test_password_authentication(sandbox_factory: Callable[..., SSHSandbox],
                                 sandbox_dir: Path) -> None:
    if os.geteuid() != 0:
        skip_or_fail("password authentication needs root")
    box = sandbox_factory(password="s3cret-Pw", authorize_client_key=False)
    askpass = sandbox_dir / "askpass.sh"
    askpass.write_text("#!/bin/sh\necho 's3cret-Pw'\n")
    askpass.chmod(0o755)
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}
    opts = ["-o", "BatchMode=no", "-o", "PreferredAuthentications=password",
            "-o", "NumberOfPasswordPrompts=1"]
    done = box.ssh("id", "-un", options=opts, env=env)
    assert (done.returncode, done.stdout.strip()) == (0, box.user), done.stderr
    assert f"Accepted password for {box.user}" in box.log_text()
    askpass.write_text("#!/bin/sh\necho wrong\n")
    assert box.ssh("true", options=opts, env=env).returncode == 255


def test_extra_config_and_authorize_with_options(sandbox_factory: Callable[..., SSHSandbox]
                                                 ) -> None:
    box = sandbox_factory(extra_config="Banner none\n", authorize_client_key=False)
    assert box.ssh("true").returncode == 255
    box.authorize(box.client_key_pub, options='command="echo forced"')
    done = box.ssh("id")
    assert (done.returncode, done.stdout.strip()) == (0, "forced"), done.stderr


def test_stop_kills_sshd_and_the_users_processes(sandbox_factory: Callable[..., SSHSandbox]
                                                 ) -> None:
    box = sandbox_factory()
    done = box.ssh("nohup sleep 300 >/dev/null 2>&1 </dev/null & echo started")
    assert done.stdout.strip() == "started", done.stderr
    pid, port = box.pid, box.port
    # The sleeper was orphaned (its shell exited) but still carries the sandbox token.
    # nohup execs sleep in the background, perhaps after ssh returned: wait for it.
    end = time.monotonic() + 5
    while not any(cmdline(p)[:1] == ["sleep"] for p in pids_with_env(box.token)):
        assert time.monotonic() < end, "the detached sleep never appeared"
        time.sleep(0.05)
    box.stop()
    assert not Path(f"/proc/{pid}").exists()
    if box.is_root:
        assert pids_of_uid(box.uid) == []  # not even zombies
    assert pids_with_env(box.token) == []
    assert not tcp_connect(None, box.address, port, timeout=1)
    box.stop()  # idempotent
    box.start()  # and restartable, on the same port when free
    assert box.ssh("true").returncode == 0


def test_two_sandboxes_side_by_side(sandbox_factory: Callable[..., SSHSandbox]) -> None:
    a, b = sandbox_factory(), sandbox_factory()
    assert a.port != b.port and a.base_dir != b.base_dir
    if a.is_root:
        assert a.user != b.user and a.uid != b.uid
    assert a.ssh("id", "-un").stdout.strip() == a.user
    assert b.ssh("id", "-un").stdout.strip() == b.user


# ---------------------------------------------------------------- network namespaces


def test_linked_namespaces_talk_and_iptables_drop_blocks(
        no_leaked_processes: None, netns_factory: Callable[..., Netns]) -> None:
    a, b = netns_factory(), netns_factory()
    veth = link(a, b, "10.88.0.1/24", "10.88.0.2/24")
    assert len(veth.if_a) <= 15 and veth.if_a not in Path("/proc/net/dev").read_text()
    b.popen([sys.executable, "-c", TCP_SERVER, veth.addr_b, "8080"])
    wait_listening(a, veth.addr_b, 8080)
    reply = a.python("import socket; print(socket.create_connection("
                     f"({veth.addr_b!r}, 8080), timeout=5).recv(2).decode())")
    assert reply.stdout.strip() == "ok"
    b.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    start = time.monotonic()
    assert not tcp_connect(a, veth.addr_b, 8080, timeout=2)
    assert time.monotonic() - start >= 1.5  # dropped: a timeout, not a refusal
    b.iptables("-D", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    assert tcp_connect(a, veth.addr_b, 8080, timeout=5)


def test_nat_topology_masquerades(nat_topology: NatTopology) -> None:
    topo = nat_topology
    topo.internet.popen([sys.executable, "-c", WHATS_MY_IP, topo.internet_addr, "8000"])
    wait_listening(topo.router, topo.internet_addr, 8000)
    got = topo.laptop.python(
        "import urllib.request; print(urllib.request.urlopen("
        f"'http://{topo.internet_addr}:8000/', timeout=5).read().decode())")
    assert got.stdout.strip() == topo.router_wan_addr
    # No route back: the internet cannot reach the laptop directly.
    assert not tcp_connect(topo.internet, topo.laptop_addr, 22, timeout=1)
    # Host stays untouched.
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() in ("0", "1")
    assert topo.router.exec(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"


def test_netns_deleted_with_its_processes(netns_available: None) -> None:
    with Netns("mkdel") as ns:
        proc = ns.popen(["sleep", "300"])
        name = ns.name
        assert name in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True).stdout
    assert proc.poll() is not None
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True).stdout


def test_sandbox_inside_a_netns(netns_factory: Callable[..., Netns],
                                sandbox_factory: Callable[..., SSHSandbox]) -> None:
    ns = netns_factory()
    box = sandbox_factory(netns=ns.name)
    done = box.ssh("id", "-un")
    assert (done.returncode, done.stdout.strip()) == (0, box.user), done.stderr
    assert box.accepted_count() == 1
    assert tcp_connect(ns, "127.0.0.1", box.port)
    # The sshd is in the namespace, not on the host's loopback.
    assert Path(f"/proc/{box.pid}/ns/net").resolve() != Path("/proc/self/ns/net").resolve()


def test_sandbox_on_a_veth_address(netns_factory: Callable[..., Netns],
                                   sandbox_factory: Callable[..., SSHSandbox]) -> None:
    client, server = netns_factory(), netns_factory()
    veth = link(client, server, "10.99.0.1/24", "10.99.0.2/24")
    box = sandbox_factory(netns=server.name, address=veth.addr_b)
    done = client.exec(box.ssh_argv("id", "-un")[4:], check=False)
    assert (done.returncode, done.stdout.strip()) == (0, box.user), done.stderr
    assert f"from {veth.addr_a} port" in box.log_text()


# ---------------------------------------------------------------- CI policy


@pytest.mark.parametrize("ci, expected_rc", [("", 0), ("1", 1)])
def test_skipped_integration_test_fails_in_ci(tmp_path: Path, ci: str, expected_rc: int
                                              ) -> None:
    (tmp_path / "test_policy.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.integration
        def test_needs_something():
            pytest.skip("something missing")

        def test_plain():
            pass

        @pytest.mark.skip(reason="not integration")
        def test_plain_skip():
            pass
    """))
    # An empty ini file of its own keeps the project's configuration out; some pytest releases
    # refuse "-c /dev/null" ("unsupported format"), which broke this test in CI once.
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\nmarkers =\n    integration: needs a real sshd\n")
    env = {**os.environ, "CI": ci}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "-c", str(ini), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == expected_rc, done.stdout + done.stderr
    assert ("SKIPPED IN CI" in done.stdout) == bool(ci)
    if ci:
        assert "test_needs_something" in done.stdout
        assert "test_plain_skip" not in done.stdout.split("skipped integration tests")[-1]
