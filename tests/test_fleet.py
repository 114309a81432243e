"""Many hosts at once (mkdoctor.fleet, mkdoctor.runner): correct and fast.

- The pure parts: which checks are this computer's (run once per run), the link-port
  broker (tunnel mode: a pair per host; direct mode: the configured pair in turn), the
  first-hop gate (never more than its limit in flight), and the words that mean "the
  server dropped us before authentication" (MaxStartups).
- Ten real sshd servers, each in its own network namespace, checked at once from a laptop
  namespace with the stand-in kernel (Mathematica cannot be installed here): every host's
  link path (MK403) and kernel link (MK404) is really tested — none is skipped because
  another host's test held the ports.
- Twenty Host aliases behind one real sshd with sshd's default MaxStartups (10:30:100),
  directly and through one ProxyJump bastion: zero false failures; and a control that
  shows the same server does drop connections when nothing limits them, so the test can
  fail.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mkdoctor.fleet import HopGate, PortBroker, split_local, startup_dropped
from mkdoctor.registry import all_checks
from tests.harness.netns import link
from tests.harness.sshd import SSHSandbox
from tests.helpers import json_report, mkdoctor_env, none_left, stop_when
from tests.test_kernel_checks import install_standin

integration = pytest.mark.integration
SSHD_DEFAULT_MAXSTARTUPS = "MaxStartups 10:30:100"  # sshd_config(5): the default


# ------------------------------------------------------------------ pure parts


def test_checks_of_this_computer_run_once_the_rest_per_host() -> None:
    local, per_host = split_local(all_checks())
    local_ids = [c.id for c in local]
    assert local_ids == ["MK101", "MK102", "MK103", "MK201", "MK203", "MK204", "MK205", "MK501"]
    # MK202 runs without a host but checks the identity ssh uses for it: per host
    assert "MK202" in [c.id for c in per_host]
    assert {"MK301", "MK304", "MK403", "MK404"} <= {c.id for c in per_host}


def test_tunnel_mode_gives_each_host_its_own_free_pair() -> None:
    broker = PortBroker((31415, 31416), shared=True)
    owners = [object() for _ in range(12)]
    pairs = [broker.tunnel_pair(o) for o in owners]
    assert pairs[0] == (31415, 31416)
    assert len({p for pair in pairs for p in pair}) == 24  # no port twice
    assert broker.tunnel_pair(owners[3]) == pairs[3]  # sticky for the host's run
    for a, b in pairs[1:]:
        assert b == a + 1
        for p in (a, b):
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))  # free when handed out
    alone = PortBroker((31415, 31416), shared=False)
    assert alone.tunnel_pair(object()) == (31415, 31416)


def test_direct_mode_takes_the_configured_pair_in_turn() -> None:
    broker = PortBroker((31415, 31416), shared=True)
    a, b = object(), object()
    assert broker.direct_pair(a, 1) == (31415, 31416)
    assert broker.direct_pair(b, 0.2) is None  # a holds it
    got: list = []
    t = threading.Thread(target=lambda: got.append(broker.direct_pair(b, 10)))
    t.start()
    time.sleep(0.3)
    assert not got  # still waiting
    broker.release(a)
    t.join(5)
    assert got == [(31415, 31416)]
    assert broker.waited[b] >= 0.2


def test_an_interrupted_run_waits_for_nothing_it_shares() -> None:
    """Fleet.stop (Ctrl-C or SIGTERM in a run of several hosts): a host waiting for the
    configured pair (direct mode) or for a slot of its first hop stops waiting at once,
    a host whose run starts after the stop is ended at once, and every enlisted host's
    context is ended."""
    from mkdoctor.context import Context
    from mkdoctor.fleet import Fleet
    from mkdoctor.options import Options

    fleet = Fleet((31415, 31416), hosts=3)
    holder, waiter = Context(Options(), fleet=fleet), Context(Options(), fleet=fleet)
    assert fleet.ports.direct_pair(holder, 1) == (31415, 31416)
    got: list = []
    pair = threading.Thread(target=lambda: got.append(fleet.ports.direct_pair(waiter, 600)))
    hop = threading.Thread(target=lambda: got.append(_slot_wait(fleet.hops)))
    with fleet.hops.slot(("bastion", 22), 1, weight=fleet.hops.limit):  # all slots taken
        pair.start()
        hop.start()
        time.sleep(0.3)
        assert not got  # both wait
        t0 = time.monotonic()
        fleet.stop()
        pair.join(5)
        hop.join(5)
    assert time.monotonic() - t0 < 1 and sorted(got, key=str) == [None, "went ahead"]
    assert holder.interrupted and waiter.interrupted and holder.remaining() == 0
    late = Context(Options(), fleet=fleet)
    assert late.interrupted and late.remaining() == 0


def _slot_wait(gate: HopGate) -> str:
    with gate.slot(("bastion", 22), 600):
        return "went ahead"


def test_hop_gate_never_lets_more_than_its_limit_through() -> None:
    gate = HopGate(limit=4)
    inside, peak, lock = [0], [0], threading.Lock()

    def connect(weight: int) -> None:
        with gate.slot(("bastion", 22), 30, weight):
            with lock:
                inside[0] += weight
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= weight

    threads = [threading.Thread(target=connect, args=(1 + i % 3,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak[0] <= 4 and gate.peak[("bastion", 22)] <= 4
    assert peak[0] >= 3  # it did run several at once
    with gate.slot(None, 1) as waited:  # nothing to share: no wait
        assert waited == 0.0


@pytest.mark.parametrize("text, dropped", [
    ("kex_exchange_identification: read: Connection reset by peer\r\n"
     "Connection reset by 127.0.0.1 port 2222", True),
    ("kex_exchange_identification: Connection closed by remote host\n"
     "Connection closed by 10.0.0.5 port 22", True),
    ("ssh_exchange_identification: Connection closed by remote host", True),  # OpenSSH < 8.2
    ("alice@ws: Permission denied (publickey).", False),
    ("ssh: connect to host ws port 22: Connection refused", False),
    ("Host key verification failed.", False),
    ("ssh: Could not resolve hostname ws: Name or service not known", False),
    # a jump host that cannot reach the target (real text of ssh -J to an unrouted host)
    ("channel 0: open failed: connect failed: No route to host\r\n"
     "stdio forwarding failed\r\n"
     "kex_exchange_identification: Connection closed by remote host\r\n"
     "Connection closed by UNKNOWN port 65535", False),
])
def test_startup_drop_is_told_from_a_refusal(text: str, dropped: bool) -> None:
    assert startup_dropped(text) is dropped


# ------------------------------------------------------------------ real servers


def _alias_block(box: SSHSandbox, alias: str, extra: str = "") -> str:
    return box.client_config.read_text().replace(f"Host {box.alias}\n", f"Host {alias}\n", 1) + extra


def _worst(report: dict) -> str:
    order = ["pass", "skip", "warn", "fail", "error"]
    return max((c["status"] for c in report["checks"]), key=order.index)


@integration
def test_ten_hosts_at_once_each_link_really_tested(netns_factory, sandbox_factory,
                                                    tmp_path: Path) -> None:
    laptop = netns_factory("mkl")
    kernels = tmp_path / "wolfram"
    install_standin(kernels, "Mathematica/14.1/Executables/WolframKernel")
    config, hosts = [], []
    for i in range(10):
        ws = netns_factory("mkw")
        link(laptop, ws, f"10.77.{i}.1/24", f"10.77.{i}.2/24")
        box = sandbox_factory(netns=ws.name, address=f"10.77.{i}.2",
                              bind_mounts={"/usr/local/Wolfram": kernels})
        config.append(_alias_block(box, f"ws{i}"))
        hosts += ["--host", f"ws{i}"]
    cfg = tmp_path / "ssh_config"
    cfg.write_text("".join(config))
    data, done = json_report("--ssh-config", str(cfg), *hosts, "--mode", "tunnel", "--offline",
                             "--kernel", "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel",
                             "--timeout", "3", "--deadline", "60", netns=laptop.name, timeout=180)
    reports = data["reports"]
    assert [r["target"]["destination"] for r in reports] == [f"ws{i}" for i in range(10)]
    used = set()
    for r in reports:
        checks = {c["id"]: c for c in r["checks"]}
        for cid in ("MK403", "MK404"):
            assert checks[cid]["status"] == "pass", (r["target"]["destination"], checks[cid]["summary"],
                                                      checks[cid]["details"], checks["MK402"]["summary"])
        used.add(tuple(r["target"]["tested_ports"]))
    assert len(used) == 10, used  # each host's tests listened on a pair of its own
    assert done.returncode == 0, done.stdout
    # this computer's checks ran once: the same result in every report
    mk101 = {json.dumps(next(c for c in r["checks"] if c["id"] == "MK101")["summary"]) for r in reports}
    assert len(mk101) == 1
    assert data["summary"]["fail"] == 0 and data["summary"]["pass"] >= 10 * 10


def _default_maxstartups(box: SSHSandbox) -> SSHSandbox:
    """The sandbox's sshd with sshd's own MaxStartups default (the harness raises it)."""
    box.add_dropin("00-maxstartups", SSHD_DEFAULT_MAXSTARTUPS)
    box.reload()
    return box


def _twenty_aliases(box: SSHSandbox, cfg: Path, jump: SSHSandbox | None = None) -> list[str]:
    text, hosts = [], []
    if jump is not None:
        text.append(_alias_block(jump, "bastion"))
    for i in range(20):
        extra = "    ProxyJump bastion\n" if jump is not None else ""
        text.append(_alias_block(box, f"node{i:02d}", extra))
        hosts += ["--host", f"node{i:02d}"]
    cfg.write_text("".join(text))
    return hosts


def _no_false_failures(data: dict) -> None:
    bad = [(r["target"]["destination"], c["id"], c["summary"]) for r in data["reports"]
           for c in r["checks"] if c["status"] in ("fail", "error")]
    assert not bad, bad


@integration
def test_twenty_aliases_behind_one_sshd_with_default_maxstartups(sandbox_factory,
                                                                 tmp_path: Path) -> None:
    box = _default_maxstartups(sandbox_factory())
    hosts = _twenty_aliases(box, tmp_path / "ssh_config")
    data, done = json_report("--ssh-config", str(tmp_path / "ssh_config"), *hosts, "--offline",
                             "--mode", "tunnel", "--only", "MK201,MK202,MK301,MK302,MK303,MK304,"
                             "MK305,MK306,MK310,MK311", "--timeout", "5", timeout=180)
    assert len(data["reports"]) == 20
    _no_false_failures(data)
    assert done.returncode == 0
    assert box.accepted_count() == 20  # one login per host


@integration
def test_twenty_hosts_behind_one_bastion_with_default_maxstartups(sandbox_factory,
                                                                  tmp_path: Path) -> None:
    bastion = _default_maxstartups(sandbox_factory())
    node = _default_maxstartups(sandbox_factory())
    hosts = _twenty_aliases(node, tmp_path / "ssh_config", jump=bastion)
    data, done = json_report("--ssh-config", str(tmp_path / "ssh_config"), *hosts, "--offline",
                             "--mode", "tunnel", "--only", "MK201,MK202,MK301,MK302,MK303,MK304,"
                             "MK306", "--timeout", "5", timeout=180)
    _no_false_failures(data)
    assert done.returncode == 0
    assert node.accepted_count() == 20 and bastion.accepted_count() == 20


@integration
def test_control_the_same_server_drops_unlimited_simultaneous_connections(sandbox_factory) -> None:
    """Without a limit, 20 hosts' key scans at once (5 connections each) make this sshd
    drop connections: the two tests above would fail without the first-hop gate."""
    box = _default_maxstartups(sandbox_factory())
    argv = ["ssh-keyscan", "-T", "5", "-p", str(box.port), "--", box.address]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    outs = [p.communicate(timeout=60) for p in procs]
    keys = [sum(1 for ln in out.splitlines() if ln and not ln.startswith("#")) for out, _ in outs]
    assert min(keys) < 3 or "drop connection" in box.log_text(), keys


# ------------------------------------------------------------------ stopped mid-run


def _mkdoctor(argv: list[str], cwd: Path) -> subprocess.Popen:
    """mkdoctor ARGV, its temporary files in CWD/tmp (TMPDIR), so a test can see none stay."""
    (cwd / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "mkdoctor", *argv],
                            env=mkdoctor_env(cwd / "cfg", TMPDIR=str(cwd / "tmp")),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(cwd))


def test_stopped_while_several_hosts_wait_on_silent_servers(tmp_path: Path) -> None:
    """Three hosts whose servers accept and never answer, --timeout 10: SIGTERM while
    every host's login waits ends the run at once (not when each host's steps time out,
    as it did: 19 s for two such hosts), with no ssh of the run left running."""
    from tests.test_timeouts import _cmdline, _pids_of

    held: list[socket.socket] = []
    servers, text = [], ""
    for i in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        servers.append(s)
        threading.Thread(target=_hold_connections, args=(s, held), daemon=True).start()
        text += (f"Host silent{i}\n    HostName 127.0.0.1\n    Port {s.getsockname()[1]}\n"
                 f"    UserKnownHostsFile {tmp_path / 'known_hosts'}\n")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(text)
    mine = f"-F {cfg} "
    argv = ["--ssh-config", str(cfg), "--offline", "--timeout", "10", "--format", "json"]
    proc = _mkdoctor(argv + [a for i in range(3) for a in ("--host", f"silent{i}")], tmp_path)
    try:
        took, _, _ = stop_when(
            proc, lambda: len([p for p in _pids_of(mine) if "ControlMaster=yes" in _cmdline(p)]) == 3,
            "three logins")
        assert took < 3, f"{took:.1f} s from SIGTERM to exit"
        none_left(lambda: [_cmdline(p) for p in _pids_of(mine)])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for s in servers + held:
            s.close()


@integration
def test_stopped_while_several_hosts_run_hung_kernels(sandbox_factory, sandbox_dir: Path) -> None:
    """Two real hosts whose (stand-in) kernels hang, under a 60 s kernel timeout: SIGTERM
    once both kernels run ends the run within seconds and leaves no kernel on either
    server (MK404's launch-command kernel does not end with its ssh session: the
    interrupt ends it the way the deadline does) and no ssh or mkdoctor running."""
    from tests.test_kernel_checks import _suspects, assert_nothing_left

    boxes = [sandbox_factory() for _ in range(2)]
    cfg = sandbox_dir / "ssh_config"
    cfg.write_text("".join(_alias_block(b, f"ws{i}") for i, b in enumerate(boxes)))
    # one stand-in kernel (Mathematica cannot be installed here) for both, each host's
    # ~/.standin-fault making it hang
    kernel = install_standin(sandbox_dir / "k", "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    for b in boxes:
        (b.home / ".standin-fault").write_text("hang\n")
    proc = _mkdoctor(["--ssh-config", str(cfg), "--host", "ws0", "--host", "ws1", "--offline",
                      "--only", "MK301,MK302,MK303,MK304,MK401,MK402,MK404",
                      "--kernel", str(kernel), "--kernel-timeout", "60",
                      "--format", "json"], sandbox_dir)
    try:
        def both_running() -> bool:  # MK402's and MK404's kernel on each host
            return len(_suspects([str(kernel)], ("kernel",))) >= 4

        took, _, _ = stop_when(proc, both_running, "both hosts' kernels")
        assert took < 6, f"{took:.1f} s from SIGTERM to exit"
        assert_nothing_left([str(sandbox_dir)], wait=5)
        assert not list((sandbox_dir / "tmp").iterdir())  # MK404's, cut off, cleaned up
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _hold_connections(server: socket.socket, held: list[socket.socket]) -> None:
    while True:
        try:
            held.append(server.accept()[0])  # never a banner
        except OSError:
            return
