"""A real Slurm cluster for tests: :class:`SlurmCluster`.

Topology (every namespace's name is random; addresses exist only inside them)::

    laptop 10.91.0.2 --veth-- 10.91.0.1  login  10.92.0.1 (bridge) --veth-- node1 10.92.0.11
                                                                  \\-veth-- node2 10.92.0.12

* ``laptop``: where mkdoctor and the front end's launch command run. It reaches only the
  login node's sshd; it has no route to the compute nodes.
* ``login``: a real OpenSSH sshd (:class:`SSHSandbox`, its per-sandbox user is the cluster
  user), ``slurmctld``. Users log in here and run ``sinfo``/``srun``.
* ``nodeN``: ``slurmd`` only (no route to the laptop: "the compute nodes are reachable
  only from the login node").

Slurm is Debian's (``slurmctld``, ``slurmd``, ``slurm-client``, ``munge``), configured by
a private ``slurm.conf`` (``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``,
``SelectType=select/cons_tres``, private ports, state, spool and log directories) and a
private ``munged`` (its own key and socket; ``AuthInfo=socket=...``). Each daemon runs as
pid 1 of its own pid namespace (``unshare --pid --kill-child``; stopping it kills every
job step it started), in its own UTS namespace (its hostname is its Slurm node name) and
its own mount namespace where

* ``/etc/passwd``, ``/etc/group``, ``/etc/shadow`` are the login sandbox's copies (the
  cluster user exists everywhere, as with a directory service),
* ``/etc/slurm`` is the private configuration directory (so ``srun`` finds it at its
  default path, as on a real cluster: the login sshd shows the same directory there),
* ``node_mounts`` show test directories over existing paths (under ``base_dir``: the
  real filesystem is never written): a kernel installed on the login node only (an
  empty directory over it on the nodes), a kernel that fails its licence on the nodes.

The user's home directory is the login sandbox's, shared with the nodes (as NFS homes
are). Everything is stopped and removed by :meth:`SlurmCluster.stop` (processes killed by
pid, namespaces deleted) and by the kernel if the test process dies (PR_SET_PDEATHSIG).
Needs root.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Iterator, Sequence

from .netns import IP, Netns, NetnsError, link
from .procs import terminate_tree
from .sshd import SSHSandbox, _die_with_parent

SLURMCTLD = shutil.which("slurmctld") or "/usr/sbin/slurmctld"
SLURMD = shutil.which("slurmd") or "/usr/sbin/slurmd"
MUNGED = shutil.which("munged") or "/usr/sbin/munged"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
START_TIMEOUT = 30.0

LAPTOP_ADDR, LOGIN_PUBLIC_ADDR = "10.91.0.2", "10.91.0.1"
LOGIN_CLUSTER_ADDR = "10.92.0.1"


def slurm_unavailable_reason() -> str | None:
    """None if Slurm and munge are installed and we are root, else why not."""
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root"
    for exe in (SLURMCTLD, SLURMD, MUNGED, shutil.which("srun") or "/usr/bin/srun"):
        if not os.path.exists(exe):
            return f"{exe} is not installed (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmCluster:
    """laptop, login node (sshd + slurmctld) and ``nodes`` compute nodes (slurmd)."""

    def __init__(self, base_dir: Path, nodes: int = 1, login_mounts: dict[str, Path] | None = None,
                 node_mounts: dict[str, Path] | None = None, extra_conf: str = "",
                 sshd_extra_config: str = "") -> None:
        self.base_dir = Path(base_dir).absolute()
        self.n_nodes = nodes
        self.login_mounts = dict(login_mounts or {})
        self.node_mounts = dict(node_mounts or {})
        self.extra_conf = extra_conf
        self.sshd_extra_config = sshd_extra_config
        self.cluster_name = f"mk{secrets.token_hex(3)}"
        self.node_names = [f"node{i + 1}" for i in range(nodes)]
        self.node_addrs = [f"10.92.0.{11 + i}" for i in range(nodes)]
        self.conf_dir = self.base_dir / "etc-slurm"
        self.state_dir = self.base_dir / "state"
        self.spool_dir = self.base_dir / "spool"
        self.log_dir = self.base_dir / "log"
        self.munge_dir = self.base_dir / "munge"
        self.munge_socket = self.base_dir / "munge-sock" / "munge.socket"
        self.laptop: Netns | None = None
        self.login: Netns | None = None
        self.nodes: list[Netns] = []
        self.sandbox: SSHSandbox | None = None
        self._daemons: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._stack = contextlib.ExitStack()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> "SlurmCluster":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for d in (self.base_dir, self.conf_dir, self.state_dir, self.spool_dir, self.log_dir,
                  self.munge_socket.parent):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        self.munge_dir.mkdir(mode=0o700, exist_ok=True)
        self._network()
        self._munged()
        self.sandbox = SSHSandbox(self.base_dir / "login-sshd", netns=self.login.name,
                                  address=LOGIN_PUBLIC_ADDR, extra_config=self.sshd_extra_config,
                                  bind_mounts={"/etc/slurm": self.conf_dir, **self.login_mounts})
        self._stack.callback(self.sandbox.stop)
        self.sandbox.start()
        self._write_conf()
        self._daemon(self.login, "login", [SLURMCTLD, "-D", "-f", "/etc/slurm/slurm.conf"],
                     self.login_mounts)
        for ns, name in zip(self.nodes, self.node_names):
            self._daemon(ns, name, [SLURMD, "-D", "-N", name, "-f", "/etc/slurm/slurm.conf"],
                         self.node_mounts)
        self.wait_idle()

    def stop(self) -> None:
        """Kill every daemon (and so every job step), stop sshd, delete the namespaces."""
        for proc in self._daemons:
            if proc.poll() is None:
                terminate_tree(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._daemons.clear()
        for fh in self._logs:
            fh.close()
        self._logs.clear()
        self._stack.close()

    # ------------------------------------------------------------------ pieces

    def _network(self) -> None:
        self.laptop = self._stack.enter_context(Netns("mklap"))
        self.login = self._stack.enter_context(Netns("mklgn"))
        link(self.laptop, self.login, f"{LAPTOP_ADDR}/24", f"{LOGIN_PUBLIC_ADDR}/24")
        bridge = f"mkb{secrets.token_hex(4)}"
        run = lambda *a: _run([IP, "-n", self.login.name, *a])  # noqa: E731
        run("link", "add", bridge, "type", "bridge")
        run("addr", "add", f"{LOGIN_CLUSTER_ADDR}/24", "dev", bridge)
        run("link", "set", bridge, "up")
        for i, addr in enumerate(self.node_addrs):
            ns = self._stack.enter_context(Netns("mknod"))
            self.nodes.append(ns)
            tag = secrets.token_hex(4)
            outer, inner = f"mkv{tag}l", f"mkv{tag}n"
            _run([IP, "link", "add", outer, "netns", self.login.name, "type", "veth", "peer",
                  "name", inner, "netns", ns.name])
            run("link", "set", outer, "master", bridge)
            run("link", "set", outer, "up")
            _run([IP, "-n", ns.name, "addr", "add", f"{addr}/24", "dev", inner])
            _run([IP, "-n", ns.name, "link", "set", inner, "up"])

    def _munged(self) -> None:
        key = self.munge_dir / "munge.key"
        key.write_bytes(secrets.token_bytes(128))
        key.chmod(0o400)
        log = open(self.log_dir / "munged.log", "ab")
        self._logs.append(log)
        proc = subprocess.Popen(
            [MUNGED, "-F", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
             f"--pid-file={self.munge_dir / 'munged.pid'}", f"--log-file={self.log_dir / 'munged.log'}",
             f"--seed-file={self.munge_dir / 'seed'}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            preexec_fn=_die_with_parent)
        self._daemons.append(proc)
        _wait(lambda: self.munge_socket.exists(), "munged socket", proc, self.log_dir / "munged.log")

    def _write_conf(self) -> None:
        assert self.sandbox is not None
        ctld_port, d_port = _free_port(), _free_port()
        nodes = "\n".join(
            f"NodeName={n} NodeAddr={a} NodeHostname={n} CPUs=2 State=UNKNOWN"
            for n, a in zip(self.node_names, self.node_addrs))
        text = f"""\
# mkdoctor test cluster (private: ports, state, spool, logs, munge socket)
ClusterName={self.cluster_name}
SlurmctldHost=login({LOGIN_CLUSTER_ADDR})
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.state_dir}
SlurmdSpoolDir={self.spool_dir}/%n
SlurmctldPidFile={self.state_dir}/slurmctld.pid
SlurmdPidFile={self.spool_dir}/slurmd.%n.pid
SlurmctldLogFile={self.log_dir}/slurmctld.log
SlurmdLogFile={self.log_dir}/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MessageTimeout=10
SlurmdTimeout=30
KillWait=5
MinJobAge=2
Licenses=mathematica:2
{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=closed Nodes=ALL Default=NO MaxTime=INFINITE State=DOWN
PartitionName=staff Nodes=ALL Default=NO MaxTime=INFINITE State=UP AllowGroups=root
PartitionName=short Nodes=ALL Default=NO MaxTime=00:01:00 State=UP
"""
        if self.extra_conf:
            text += self.extra_conf.strip("\n") + "\n"
        (self.conf_dir / "slurm.conf").write_text(text)
        (self.conf_dir / "slurm.conf").chmod(0o644)
        (self.conf_dir / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\n")
        (self.conf_dir / "cgroup.conf").chmod(0o644)
        for n in self.node_names:
            (self.spool_dir / n).mkdir(mode=0o755, exist_ok=True)

    def _daemon(self, ns: Netns, hostname: str, argv: list[str], mounts: dict[str, Path]) -> None:
        """Run ``argv`` in ``ns`` as pid 1 of new pid/UTS/mount namespaces (see module doc)."""
        assert self.sandbox is not None
        etc = self.sandbox.etc_dir
        q = shlex.quote
        binds = [(str(etc / "passwd"), "/etc/passwd"), (str(etc / "group"), "/etc/group"),
                 (str(etc / "shadow"), "/etc/shadow"), (str(self.conf_dir), "/etc/slurm")]
        binds += [(str(Path(src).absolute()), target) for target, src in sorted(mounts.items())]
        for _, target in binds:  # never create anything outside the test's directories
            if not Path(target).exists():
                raise NetnsError(f"mount target {target} does not exist (use a path under "
                                 "the cluster's base_dir, shown differently on the nodes)")
        script = "".join(f"mount --bind {q(s)} {q(t)} && " for s, t in binds)
        # ``ip netns exec`` mounts a fresh /sys, without the cgroup mounts; slurmd
        # initialises its cgroup plugin even with proctrack/linuxproc and task/none, and
        # the v1 plugin only needs a tmpfs there (nothing is ever put in a cgroup).
        script += "mount -t tmpfs -o mode=0755,size=1m mkdcg /sys/fs/cgroup && "
        script += f"hostname {q(hostname)} && exec \"$@\""
        log = open(self.log_dir / f"{hostname}.daemon.log", "ab")
        self._logs.append(log)
        proc = subprocess.Popen(
            ns.argv([UNSHARE, "--mount", "--propagation", "private", "--uts", "--pid", "--fork",
                     "--kill-child", "--mount-proc", "/bin/sh", "-c", script, "sh", *argv]),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            preexec_fn=_die_with_parent)
        self._daemons.append(proc)

    # ------------------------------------------------------------------ use

    def login_ssh(self, command: str, timeout: float = 60, check: bool = False
                  ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (one shell string) on the login node as the cluster user, with
        real ssh from the laptop namespace."""
        return subprocess.run(self.laptop_argv(self.ssh_argv(command)), capture_output=True,
                              text=True, timeout=timeout, check=check, stdin=subprocess.DEVNULL,
                              env=_env())

    def ssh_argv(self, *remote: str) -> list[str]:
        """``ssh -F CONFIG -o BatchMode=yes sandbox [-- remote]`` (run it in the laptop netns)."""
        assert self.sandbox is not None
        argv = ["ssh", "-F", str(self.sandbox.client_config), "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=10", self.sandbox.alias]
        return argv + (["--", *remote] if remote else [])

    def laptop_argv(self, argv: Sequence[str]) -> list[str]:
        assert self.laptop is not None
        return self.laptop.argv(argv)

    def slurm(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A Slurm client command as root on the login node (the test's admin view)."""
        assert self.login is not None and self.sandbox is not None
        q = shlex.quote
        etc = self.sandbox.etc_dir
        return subprocess.run(
            self.login.argv([UNSHARE, "--mount", "--propagation", "private", "/bin/sh", "-c",
                             f"mount --bind {q(str(self.conf_dir))} /etc/slurm && "
                             f"mount --bind {q(str(etc / 'passwd'))} /etc/passwd && "
                             f"mount --bind {q(str(etc / 'group'))} /etc/group && "
                             'exec "$@"', "sh", *argv]),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def jobs(self) -> list[str]:
        """Every job in the queue, any state but gone: ``JOBID STATE NAME USER`` lines."""
        done = self.slurm("squeue", "-h", "-o", "%i %T %j %u")
        if done.returncode != 0:
            raise NetnsError(f"squeue failed: {done.stderr}")
        return [line for line in done.stdout.splitlines() if line.strip()]

    def wait_no_jobs(self, timeout: float = 20.0) -> list[str]:
        """Wait until ``squeue`` lists no job; return what is left (empty: none)."""
        deadline = time.monotonic() + timeout
        left = self.jobs()
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = self.jobs()
        return left

    def wait_idle(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every node is idle in ``sinfo`` (slurmctld and all slurmds up)."""
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            done = self.slurm("sinfo", "-h", "-N", "-p", "debug", "-o", "%N %t")
            out = done.stdout + done.stderr
            states = dict(line.split()[:2] for line in done.stdout.splitlines() if line.strip())
            if done.returncode == 0 and all(states.get(n) == "idle" for n in self.node_names):
                return
            for proc in self._daemons:
                if proc.poll() is not None:
                    raise NetnsError(f"a Slurm daemon exited ({proc.args!r}):\n{self.logs()}")
            time.sleep(0.3)
        raise NetnsError(f"nodes not idle after {timeout}s: {out}\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            with contextlib.suppress(OSError):
                parts.append(f"== {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def node_pids(self) -> list[int]:
        """Pids still running in the compute nodes' namespaces (slurmd's own excluded)."""
        out = []
        for ns in self.nodes:
            out += ns.pids()
        return out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    return env


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}")


def _wait(pred, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not pred():
        if proc.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise NetnsError(f"{what}: not ready ({proc.args!r}):\n{text}")
        time.sleep(0.05)


@contextlib.contextmanager
def slurm_cluster(base_dir: Path, **kw) -> Iterator[SlurmCluster]:
    with SlurmCluster(base_dir, **kw) as cluster:
        yield cluster


# ---------------------------------------------------------------------- test software

STANDIN = Path(__file__).resolve().parent.parent / "standin_kernel.py"

ECHO_KERNEL = '''#!/usr/bin/env python3
# Test kernel: connects to both ports of -linkname like the stand-in, then echoes every
# byte back on the same connection (to prove that the relay carries data both ways).
import selectors, socket, sys
args = [a.lower() for a in sys.argv[1:]]
name = sys.argv[1:][args.index("-linkname") + 1]
socks = []
for part in name.split(","):
    port, _, host = part.partition("@")
    socks.append(socket.create_connection((host or "127.0.0.1", int(port)), timeout=10))
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        data = key.fileobj.recv(65536)
        if not data:
            sys.exit(0)
        key.fileobj.sendall(data)
'''

# A kernel whose licence is locked to another machine: what users report from compute
# nodes (observed: "Mathematica cannot find a valid password" with the node's machine
# name and MathID). On the nodes it replaces the stand-in at the same path.
NODE_LOCKED = '''#!/bin/sh
echo
echo "Mathematica cannot find a valid password."
echo
echo "Machine name: $(hostname)"
echo "MathID: 6543-21098-$(hostname | cksum | cut -c1-5)"
exit 1
'''


def _exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


class Software:
    """Kernels under ``root`` (the cluster's shared software tree) and what the nodes
    show instead (:attr:`node_mounts`)."""

    HOSTILE_DIR = "it's \"odd\" $(touch pwned) dir"

    def __init__(self, root: Path) -> None:
        self.root = root
        sw = root / "sw"
        v = "14.1/Executables/WolframKernel"
        self.kernel = sw / "wolfram" / v
        self.echo = sw / "echo" / v
        self.hostile = sw / self.HOSTILE_DIR / v
        self.login_only = sw / "loginonly" / v
        self.locked = sw / "locked" / v
        for path in (self.kernel, self.hostile, self.login_only, self.locked):
            _exe(path, STANDIN.read_text())
        _exe(self.echo, ECHO_KERNEL)
        locked_node = _exe(root / "sw-node" / "locked" / v, NODE_LOCKED)
        empty = root / "sw-node" / "empty"
        empty.mkdir(parents=True)
        self.node_mounts = {str(sw / "loginonly"): empty, str(sw / "locked"): root / "sw-node" / "locked"}
        for d in [root, *sorted({p for p in root.rglob("*") if p.is_dir()})]:
            d.chmod(0o755)
        del locked_node


FRONTEND = r'''
import socket, sys, time
ports = [int(p) for p in sys.argv[1].split(",")]
echo = sys.argv[2] == "echo"
ls = []
for p in ports:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", p)); s.listen(1); s.settimeout(float(sys.argv[3])); ls.append(s)
print("listening", flush=True)
try:
    cs = [l.accept()[0] for l in ls]
except socket.timeout:
    print("timeout", flush=True); sys.exit(1)
print("connected", flush=True)
if echo:
    for i, c in enumerate(cs):
        msg = (b"ping-%d-" % i) * 5000
        c.sendall(msg); got = b""; c.settimeout(20)
        while len(got) < len(msg):
            d = c.recv(65536)
            if not d: break
            got += d
        print("echo", i, "ok" if got == msg else "BAD %d" % len(got), flush=True)
sys.stdin.readline()
for c in cs: c.close()
print("closed", flush=True)
'''


class Frontend:
    """A stand-in for the front end's side of the link, in the laptop namespace: listens
    on both ports (``-LinkMode Listen``), reports connections, closes on :meth:`close`."""

    def __init__(self, cluster: SlurmCluster, ports: tuple[int, int], echo: bool = False,
                 wait: float = 60) -> None:
        assert cluster.laptop is not None
        import sys

        self.proc = cluster.laptop.popen(
            [sys.executable, "-c", FRONTEND, f"{ports[0]},{ports[1]}", "echo" if echo else "-",
             str(wait)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.readline() == "listening"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.write("close\n")
                self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)


# ------------------------------------------------------------------ parallel subkernels

LISTEN_TWO = r'''
import socket, sys
ls = []
for p in (0, 0):
    s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(1); s.settimeout(30); ls.append(s)
print(",".join("%d@%s" % (s.getsockname()[1], sys.argv[1]) for s in ls), flush=True)
cs = [s.accept() for s in ls]
print("connected", cs[0][1][0], flush=True)
sys.stdin.readline()
'''


def srun_template(text: str, job: str) -> str:
    """The RemoteMachine template of a cluster parallel-kernels file (as the master
    kernel builds it: the job's ID in place of ``" <> job <> "``)."""
    from mkdoctor.cluster import parallel_template

    return parallel_template(text, job)


def run_subkernel(cluster: "SlurmCluster", template: str, node: str) -> str:
    """Run ``template`` as RemoteMachine does (`` `1` `` the node, `` `2` `` the link name
    of a master kernel's side listening on the login node's cluster address, `` `4` `` the
    protocol), from the laptop through the login node; return the address the subkernel
    connected from ("" if it did not)."""
    import sys

    assert cluster.login is not None and cluster.laptop is not None
    master = cluster.login.popen([sys.executable, "-c", LISTEN_TWO, LOGIN_CLUSTER_ADDR],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert master.stdout is not None and master.stdin is not None
        linkname = master.stdout.readline().strip()
        line = (template.replace("`1`", node).replace("`2`", linkname)
                .replace("`4`", "-linkprotocol TCPIP"))
        sub = cluster.laptop.popen(cluster.ssh_argv(line), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        said = master.stdout.readline().strip()
        master.stdin.write("\n")
        master.stdin.flush()
        sub.communicate(timeout=30)
        return said.split(" ", 1)[1] if said.startswith("connected ") else ""
    finally:
        if master.poll() is None:
            master.kill()
