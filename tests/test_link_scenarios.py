"""MK403 link-path and MK404 kernel-link in real network namespaces, with a real sshd
(the workstation) and the stand-in kernel, mkdoctor running inside the laptop's namespace.

- The NAT recipe (harness nat_topology: laptop behind a MASQUERADE router, the
  workstation on the "internet"): direct mode fails (the kernel cannot reach the laptop's
  private address) and recommends tunnel mode; tunnel mode passes MK403 and MK404.
- The firewall recipe: laptop and workstation on one network, the laptop's INPUT drops the
  link ports: direct mode fails naming the firewall; an ACCEPT for exactly those ports,
  inserted before the DROP, makes MK403 (and the kernel's real link, MK404) pass.
- Tunnel-mode refusals: sshd's AllowTcpForwarding, and a port already taken on the server.

Also the pure parts of checks/listen.py and checks/catalogue/mk404_kernel_link.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from mkdoctor.checks.mk404_kernel_link import forwards_of, with_run_options
from mkdoctor.listen import LinkListener, ListenError, listening, parse_probe, probe_script
from tests.harness.netns import Netns, NatTopology, link
from tests.harness.sshd import SSHSandbox
from tests.helpers import ROOT, by_id, empty_config_dir, json_report, mkdoctor_env
from tests.test_kernel_checks import LOGIN, assert_nothing_left, counted_starts, install_standin
from tests.test_network_checks import start_whoami

PORTS = (31415, 31416)
TUNNEL_FIX = ("use tunnel mode (--mode tunnel; mkdoctor setup writes it): it needs nothing "
              "inbound on the laptop")
FAST = ("--offline", "--timeout", "2", "--kernel-timeout", "10", "--deadline", "40")


@pytest.fixture
def nothing_left(sandbox_factory: Callable[..., SSHSandbox], sandbox_dir: Path):
    yield
    assert_nothing_left([str(sandbox_dir)])


def run(box: SSHSandbox, only: str, *extra: str, netns: str | None = None) -> dict:
    data, done = json_report("--ssh-config", str(box.client_config), "--host", box.alias,
                             "--only", only, *FAST, *extra, netns=netns)
    assert "Traceback" not in done.stderr, done.stderr
    return by_id(data)


def kernel_in(box: SSHSandbox) -> str:
    return str(install_standin(box.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel"))


# ------------------------------------------------------------------ pure parts


def test_listener_records_tokens_and_closes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        p1 = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        p2 = s.getsockname()[1]
    lis = LinkListener("127.0.0.1", (p1, p2)).open()
    try:
        with pytest.raises(ListenError) as err:  # a port already listened on is refused
            LinkListener("127.0.0.1", (p1,)).open()
        assert err.value.busy
        for p, tok in ((p1, b"a1"), (p2, b"b2")):
            with socket.create_connection(("127.0.0.1", p), timeout=2) as c:
                c.sendall(tok)
        assert lis.received_all({p1: b"a1", p2: b"b2"}, 3)
        assert not lis.received_all({p1: b"zz"}, 0.2)
    finally:
        lis.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p1), timeout=1).close()


def test_probe_script_runs_and_classifies_locally() -> None:
    """The remote probe, run here by sh: a refused port and a token that arrives."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    open_port = srv.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        done = subprocess.run(["sh", "-c", probe_script("127.0.0.1", {open_port: "tok1",
                                                                       closed_port: "tok2"}, 2)],
                              capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin", "SSH_CONNECTION": "10.0.0.9 5 10.0.0.1 22"})
        conn, _ = srv.accept()
        assert conn.recv(10) == b"tok1"
        conn.close()
    finally:
        srv.close()
    seen, results = parse_probe(done.stdout)
    assert seen == "10.0.0.9"
    assert results[open_port].result == "ok"
    assert results[closed_port].result == "refused"


def test_parse_probe_classifies_bash_and_nc_errors() -> None:
    seen, r = parse_probe("S\t\nR\t1\tbash\terror\tbash: connect: Network is unreachable\n"
                          "R\t2\tnc\terror\tnc: connect to x port 2 (tcp) failed: Connection refused\n"
                          "R\t3\tbash\ttimeout\tno answer\n")
    assert (r[1].result, r[2].result, r[3].result) == ("net-unreachable", "refused", "timeout")


def test_run_options_inserted_after_ssh() -> None:
    local = ["ssh", "-R", "1:127.0.0.1:1", "-R2:127.0.0.1:2", "mk-x", "k -wstp"]
    out = with_run_options(local, "/tmp/cm", "/cfg", 2222)
    assert out[:9] == ["ssh", "-F", "/cfg", "-o", "ControlPath=/tmp/cm", "-o", "ControlMaster=no",
                       "-o", "BatchMode=yes"]
    assert out[-2:] == ["mk-x", "k -wstp"] and "-p" in out
    assert with_run_options(["ssh", "-F", "/a", "h", "c"], "/cm", "/cfg", None).count("-F") == 1
    assert forwards_of(local) == ["1:127.0.0.1:1", "2:127.0.0.1:2"]


# ------------------------------------------------------------------ integration

integration = pytest.mark.integration


@integration
def test_nat_direct_mode_fails_and_recommends_tunnel(nat_topology: NatTopology, sandbox_factory,
                                                     nothing_left: None) -> None:
    topo = nat_topology
    box = sandbox_factory(netns=topo.internet.name, address=topo.internet_addr)
    checks = run(box, f"{LOGIN},MK101,MK403", "--mode", "direct", "--link-ports",
                 f"{PORTS[0]},{PORTS[1]}", netns=topo.laptop.name)
    mk403 = checks["MK403"]
    assert mk403["status"] == "fail", mk403
    # The server (on the "internet") has no route to the laptop's private address.
    assert mk403["summary"] == (f"the server has no route to {topo.laptop_addr} "
                                "(a private address it cannot reach)"), mk403
    assert mk403["fix"] == TUNNEL_FIX
    details = "\n".join(mk403["details"])
    assert (f"NAT: the server sees this laptop as {topo.router_wan_addr}, not {topo.laptop_addr}"
            in details)


@integration
def test_nat_seen_by_mk103_alone_makes_tunnel_mode_the_fix(nat_topology: NatTopology,
                                                          sandbox_factory, nothing_left: None) -> None:
    """--link-host is the address the server sees us from (the router's), so the address
    gives no hint of NAT; MK103, with a what-is-my-IP service on the "internet", sees it.
    The router refuses the connection: the fix is tunnel mode alone. Without MK103's
    verdict (--offline) the same failure also suggests checking --link-host."""
    topo = nat_topology
    box = sandbox_factory(netns=topo.internet.name, address=topo.internet_addr)
    url = start_whoami(topo.internet, topo.internet_addr)
    args = ("--ssh-config", str(box.client_config), "--host", box.alias, "--mode", "direct",
            "--link-host", topo.router_wan_addr, "--timeout", "2", "--deadline", "40")
    data, done = json_report(*args, "--only", f"{LOGIN},MK101,MK102,MK103,MK403", "--ip-service",
                             url, netns=topo.laptop.name, env={"NO_PROXY": "*", "no_proxy": "*"})
    assert "Traceback" not in done.stderr, done.stderr
    checks = by_id(data)
    assert checks["MK103"]["status"] == "warn", checks["MK103"]  # behind NAT, direct mode asked
    mk403 = checks["MK403"]
    assert mk403["status"] == "fail", mk403
    assert mk403["summary"].startswith(f"{topo.router_wan_addr} port {PORTS[0]} refused the connection")
    assert mk403["fix"] == TUNNEL_FIX
    assert "MK103 saw NAT" in mk403["details"]

    data, done = json_report(*args, "--only", f"{LOGIN},MK101,MK403", "--offline",
                             netns=topo.laptop.name)
    mk403 = by_id(data)["MK403"]
    assert mk403["status"] == "fail", mk403
    assert mk403["fix"] == f"{TUNNEL_FIX}; or check --link-host {topo.router_wan_addr}"
    assert not any("NAT" in d for d in mk403["details"]), mk403["details"]


@integration
def test_nat_tunnel_mode_link_path_and_kernel_link_pass(nat_topology: NatTopology,
                                                        sandbox_factory, nothing_left: None) -> None:
    topo = nat_topology
    box = sandbox_factory(netns=topo.internet.name, address=topo.internet_addr)
    kernel = kernel_in(box)
    checks = run(box, f"{LOGIN},MK401,MK402,MK403,MK404", "--mode", "tunnel", "--kernel", kernel,
                 netns=topo.laptop.name)
    assert checks["MK403"]["status"] == "pass", checks["MK403"]
    mk404 = checks["MK404"]
    assert mk404["status"] == "pass", mk404
    details = "\n".join(mk404["details"])
    assert f"-R {PORTS[0]}:127.0.0.1:{PORTS[0]}" in details
    assert "ControlMaster=no" in details  # the run's connection, no second login
    assert box.accepted_count() == 1
    # After the run the master is gone, and with it every forward (the run's connection was
    # closed). That forwards are cancelled while it is still open: test_forwards_cancelled_*.
    for p in PORTS:
        assert topo.internet.exec(["ss", "-Hltn", f"sport = :{p}"]).stdout.strip() == ""


# Runs the engine in this process (inside the laptop's namespace) and, before the run's
# SSH master is closed, asks the server what listens on the link ports: a forward left
# open by MK403 or MK404 would still be there. Prints one JSON object.
DRIVE = r"""
import json, sys, time
from mkdoctor.cli import build_parser, options_from_args
from mkdoctor.context import Context
from mkdoctor.engine import run_checks
from mkdoctor.registry import all_checks

ids = sys.argv[1].split(",")
opts, (target,) = options_from_args(build_parser().parse_known_args(sys.argv[2:])[0])
ctx = Context(opts, target)
try:
    results = run_checks(ctx, [c for c in all_checks() if c.id in ids])
    listening, end = [], time.monotonic() + 3  # a cancel takes effect a moment later
    while True:
        look = ctx.ssh.run(["ss", "-Hltn"], 5)
        listening = [ln for ln in look.stdout.splitlines() if len(ln.split()) > 3
                     and ln.split()[3].rpartition(":")[2] in {str(p) for p in ctx.link_ports}]
        if look.exit_code != 0 or not listening or time.monotonic() > end:
            break
        time.sleep(0.2)
    print(json.dumps({"checks": {c.id: [r.status.value, r.summary] for c, r in results},
                      "ss_ok": look.exit_code == 0, "listening": listening}))
finally:
    ctx.close()
"""


def drive(box: SSHSandbox, ns: Netns, ids: str, *extra: str) -> dict:
    """Run checks ``ids`` in-process in ``ns``; what listens on the server's link ports
    while the run's master is still open."""
    env = mkdoctor_env(empty_config_dir())
    done = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", DRIVE, ids,
                           "--ssh-config", str(box.client_config), "--host", box.alias, *FAST,
                           *extra], capture_output=True, text=True, timeout=90, env=env,
                          cwd=str(ROOT))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ss_ok"], out
    return out


@integration
def test_forwards_cancelled_by_mk403_while_the_run_goes_on(netns_factory, sandbox_factory,
                                                           nothing_left: None) -> None:
    """MK403 opens the two reverse forwards on the run's master and must cancel them: the
    master lives on for the checks after it (MK404 asks for the same ports)."""
    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    out = drive(box, laptop, f"{LOGIN},MK403", "--mode", "tunnel")
    assert out["checks"]["MK403"][0] == "pass", out
    assert out["listening"] == [], out


@integration
def test_forwards_cancelled_by_mk404_while_the_run_goes_on(netns_factory, sandbox_factory,
                                                           nothing_left: None) -> None:
    """MK404's launch command asks the master (ssh -R through the run's ControlPath) for
    the forwards: they outlive that ssh, so MK404 must cancel them itself."""
    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    out = drive(box, laptop, f"{LOGIN},MK401,MK402,MK403,MK404", "--mode", "tunnel",
                "--kernel", kernel_in(box))
    assert out["checks"]["MK404"][0] == "pass", out
    assert out["listening"] == [], out


@integration
def test_kernel_that_outlives_its_link_is_killed_and_reported(netns_factory, sandbox_factory,
                                                              nothing_left: None) -> None:
    """The kernel connects, the link is closed, and it keeps running (it would hold a
    licence): MK404 finds it by its link name, kills it, and warns; nothing is left."""
    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    kernel = kernel_in(box)
    (box.home / ".standin-fault").write_text("link-linger\n")
    checks = run(box, f"{LOGIN},MK401,MK402,MK403,MK404", "--mode", "tunnel", "--kernel", kernel,
                 netns=laptop.name)
    assert checks["MK402"]["status"] == "pass", checks["MK402"]
    mk404 = checks["MK404"]
    assert mk404["status"] == "warn", mk404
    assert mk404["summary"].startswith("the kernel connected to both link ports, but did not exit")
    assert "pgrep -af Kernel" in mk404["fix"]
    details = "\n".join(mk404["details"])
    assert "killed on the server:" in details
    assert f"{kernel} -wstp -LinkMode Connect" in details.split("killed on the server:")[1]
    # nothing_left: the lingering kernel is gone


def _same_network(netns_factory, sandbox_factory, second: str = "") -> tuple[Netns, Netns, SSHSandbox]:
    """laptop 10.88.0.1 -- workstation 10.88.0.2 (the sandbox); ``second``: another
    address of the laptop on the same link."""
    laptop, work = netns_factory("mklap"), netns_factory("mkwks")
    wire = link(laptop, work, "10.88.0.1/24", "10.88.0.2/24")
    if second:
        laptop.exec(["ip", "addr", "add", f"{second}/24", "dev", wire.if_a])
    box = sandbox_factory(netns=work.name, address="10.88.0.2")
    return laptop, work, box


@integration
def test_firewall_drop_fails_direct_mode_and_accept_fixes_it(netns_factory, sandbox_factory,
                                                              nothing_left: None) -> None:
    laptop, _, box = _same_network(netns_factory, sandbox_factory, second="10.88.0.5")
    ports = ",".join(map(str, PORTS))
    laptop.iptables("-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "DROP")
    args = ("--mode", "direct", "--link-host", "10.88.0.1")
    mk403 = run(box, f"{LOGIN},MK403", *args, netns=laptop.name)["MK403"]
    assert mk403["status"] == "fail", mk403
    assert mk403["summary"].startswith(f"no answer from 10.88.0.1 port {PORTS[0]}: a firewall")
    assert mk403["fix"].startswith("let the link ports in on this laptop's firewall")  # no NAT
    assert "iptables -I INPUT" in mk403["fix"] and TUNNEL_FIX in mk403["fix"]

    # The link address is the laptop's other address; the server sees us from 10.88.0.1:
    # another address of this laptop, not NAT, so the firewall stays the first fix.
    mk403 = run(box, f"{LOGIN},MK403", "--mode", "direct", "--link-host", "10.88.0.5",
                netns=laptop.name)["MK403"]
    assert mk403["status"] == "fail", mk403
    assert "sees us from 10.88.0.1" in mk403["details"][0], mk403["details"]
    assert mk403["fix"].startswith("let the link ports in on this laptop's firewall"), mk403
    assert not any("NAT" in d for d in mk403["details"]), mk403["details"]

    laptop.iptables("-I", "INPUT", "1", "-p", "tcp", "-m", "multiport", "--dports", ports,
                    "-j", "ACCEPT")
    kernel = kernel_in(box)
    checks = run(box, f"{LOGIN},MK401,MK402,MK403,MK404", *args, "--kernel", kernel,
                 netns=laptop.name)
    assert checks["MK403"]["status"] == "pass", checks["MK403"]
    mk404 = checks["MK404"]
    assert mk404["status"] == "pass", mk404
    details = "\n".join(mk404["details"])
    assert "`linkname`" in details  # the placeholder, filled in as the front end does
    assert "from 10.88.0.2" in details


@integration
def test_tunnel_forward_refused_by_sshd(netns_factory, sandbox_factory, nothing_left: None) -> None:
    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    args = ("--mode", "tunnel", "--link-ports", "31517,31518")
    assert run(box, f"{LOGIN},MK403", *args, netns=laptop.name)["MK403"]["status"] == "pass"
    box.add_dropin("10-noremote", "AllowTcpForwarding local")  # drop-ins win over the main file
    box.reload()
    checks = run(box, f"{LOGIN},MK403", *args, netns=laptop.name)
    mk403 = checks["MK403"]
    assert mk403["status"] == "fail", mk403
    assert "refused the reverse forward" in mk403["summary"]
    assert "AllowTcpForwarding" in mk403["fix"]
    assert any("remote port forwarding failed for listen port 31517" in d for d in mk403["details"])


@integration
def test_tunnel_port_taken_on_the_server(netns_factory, sandbox_factory, nothing_left: None) -> None:
    laptop, work, box = _same_network(netns_factory, sandbox_factory)
    with stale_listener(work, 31415):
        mk403 = run(box, f"{LOGIN},MK403", "--mode", "tunnel", netns=laptop.name)["MK403"]
    assert mk403["status"] == "fail", mk403
    assert mk403["summary"].startswith("port 31415 is already taken on the server")
    assert "ss -ltnp" in mk403["fix"]


@contextmanager
def stale_listener(ns: Netns, port: int) -> Iterator[None]:
    """Something listening on ``port`` at the server's 127.0.0.1 (a stale session)."""
    stale = ns.popen([sys.executable, "-c",
                      f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1', {port})); "
                      "s.listen(1); print('up', flush=True); time.sleep(60)"],
                     stdout=subprocess.PIPE, text=True)
    try:
        assert stale.stdout.readline().strip() == "up"
        yield
    finally:
        stale.kill()
        stale.wait()


LINK = f"{LOGIN},MK401,MK402,MK403,MK404"


@integration
def test_tunnel_mode_kernel_link_goes_first_and_the_path_is_tested_alone_when_it_fails(
        netns_factory, sandbox_factory, nothing_left: None) -> None:
    """Tunnel mode: MK404 runs the launch command first; a kernel that connected through
    the reverse forwards proves them, so MK403 does not open them again. The fault: this
    laptop resets connections to its link ports (the ssh client cannot hand the forwarded
    connection on), so the kernel's link fails, and MK403 then tests the forwards on its
    own and says the data did not arrive here."""
    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    kernel = kernel_in(box)
    checks = run(box, LINK, "--mode", "tunnel", "--kernel", kernel, "-v", netns=laptop.name)
    assert checks["MK404"]["status"] == "pass", checks["MK404"]
    mk403 = checks["MK403"]
    assert mk403["status"] == "pass", mk403
    assert mk403["summary"].endswith("(MK404 kernel-link)"), mk403
    assert not any("-O forward" in c for c in mk403["commands"]), mk403["commands"]

    ports = ",".join(map(str, PORTS))
    laptop.iptables("-A", "INPUT", "-i", "lo", "-p", "tcp", "-m", "multiport", "--dports", ports,
                    "-j", "REJECT", "--reject-with", "tcp-reset")
    checks = run(box, LINK, "--mode", "tunnel", "--kernel", kernel, "-v", netns=laptop.name)
    assert checks["MK402"]["status"] == "pass", checks["MK402"]
    assert checks["MK404"]["status"] == "fail", checks["MK404"]
    mk403 = checks["MK403"]
    assert mk403["status"] == "fail", mk403
    assert mk403["summary"] == "the forwards were opened but the data did not reach this laptop"
    assert any("-O forward" in c for c in mk403["commands"]), mk403["commands"]


@integration
def test_tunnel_port_taken_on_the_server_stops_the_launch_command(
        netns_factory, sandbox_factory, nothing_left: None) -> None:
    """A stale listener on the server's link port: MK404 reads the server's listeners
    before its launch command forwards the ports and fails at once (the kernel would
    connect to the stale listener and wait there), starting no kernel; MK403 names what
    holds the port. Without the stale listener the same run passes."""
    laptop, work, box = _same_network(netns_factory, sandbox_factory)
    kernel = kernel_in(box)
    with stale_listener(work, 31415):
        starts = counted_starts(box)
        checks = run(box, LINK, "--mode", "tunnel", "--kernel", kernel, netns=laptop.name)
        mk404 = checks["MK404"]
        assert mk404["status"] == "fail", mk404
        assert mk404["summary"].startswith("port 31415 is already taken on the server"), mk404
        assert checks["MK403"]["summary"].startswith("port 31415 is already taken on the server")
        assert "ss -ltnp" in checks["MK403"]["fix"]
        assert checks["MK402"]["status"] == "pass", checks["MK402"]
        lines = starts.read_text().splitlines()
        assert len(lines) == 1 and "-linkmode" not in lines[0].lower(), lines  # MK402's only
    checks = run(box, LINK, "--mode", "tunnel", "--kernel", kernel, netns=laptop.name)
    assert checks["MK404"]["status"] == "pass", checks["MK404"]


@integration
def test_tunnel_forward_refused_by_sshd_fails_the_launch_command_at_once(
        netns_factory, sandbox_factory, nothing_left: None) -> None:
    """sshd refuses remote forwards: the launch command's ssh ends at once and MK404
    fails with sshd's words, not as "ssh failed"; MK403 explains the policy."""
    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    kernel = kernel_in(box)
    box.add_dropin("10-noremote", "AllowTcpForwarding local")
    box.reload()
    checks = run(box, LINK, "--mode", "tunnel", "--kernel", kernel, netns=laptop.name)
    mk404 = checks["MK404"]
    assert mk404["status"] == "fail", mk404
    assert mk404["summary"].startswith("the server refused the launch command's reverse forward"), mk404
    mk403 = checks["MK403"]
    assert mk403["status"] == "fail" and "refused the reverse forward" in mk403["summary"], mk403
    assert "AllowTcpForwarding" in mk403["fix"]


@integration
def test_tunnel_test_refuses_to_judge_the_same_network_stack(sandbox_factory, nothing_left: None
                                                             ) -> None:
    """The sandbox on this machine's own network stack (no namespace): a reverse forward
    there cannot be told from a connection to our own listener, so MK403 must not pass
    (nor claim a stale session on the server): it skips and says why."""
    box = sandbox_factory()
    checks = run(box, f"{LOGIN},MK403", "--mode", "tunnel")
    mk403 = checks["MK403"]
    assert mk403["status"] == "skip", mk403
    assert "the remote host is this computer" in mk403["summary"]


def test_listening_parser() -> None:
    ss = ("LISTEN 0 128 127.0.0.1:31415 0.0.0.0:*\nLISTEN 0 128 [::1]:31416 [::]:*\n"
          "ESTAB 0 0 127.0.0.1:31417 127.0.0.1:5000\n")
    assert listening(ss, 31415) and not listening(ss, 31416) and not listening(ss, 31417)
    assert listening("tcp4 0 0 *.31416 *.* LISTEN\n", 31416)  # BSD netstat -an


@integration
def test_profile_launch_command_is_what_runs(netns_factory, sandbox_factory, sandbox_dir: Path,
                                             nothing_left: None) -> None:
    """MK404 runs the profile's launch command, not one of its own: a hand-edited kernel
    path in the profile's command fails MK404 while MK402 (the profile's kernel) passes."""
    from mkdoctor.launch import LaunchSpec, launch_command
    from mkdoctor.profile import Profile, save_profile

    laptop, _, box = _same_network(netns_factory, sandbox_factory)
    kernel = kernel_in(box)
    spec = LaunchSpec(destination=box.alias, kernel=kernel, mode="tunnel", link_ports=PORTS,
                      kernel_version="14.1", ssh_config=str(box.client_config))
    good = launch_command(spec)
    path = sandbox_dir / "work.toml"

    def check(command: str) -> dict:
        save_profile(Profile(name="work", host=box.alias, ssh_config=str(box.client_config),
                             kernel=kernel, kernel_version="14.1", mode="tunnel",
                             link_ports=list(PORTS), launch_command=command, path=path))
        data, done = json_report("--profile", str(path), "--only", f"{LOGIN},MK402,MK403,MK404",
                                 *FAST, netns=laptop.name)
        assert "Traceback" not in done.stderr, done.stderr
        return by_id(data)

    checks = check(good)
    assert checks["MK404"]["status"] == "pass", checks["MK404"]
    assert "the profile work's launch command" in "\n".join(checks["MK404"]["details"])
    checks = check(good.replace("/Executables/WolframKernel", "/Executables/WolframKernal"))
    assert checks["MK402"]["status"] == "pass"
    mk404 = checks["MK404"]
    assert mk404["status"] == "fail", mk404
    assert "not found" in mk404["summary"]
