"""The cluster launch command against a real Slurm (tests/harness/slurm.py).

The kernel is the stand-in (tests/standin_kernel.py; Mathematica cannot be installed
here) or an echo kernel that sends every byte back. The laptop, the login node and the
compute nodes are network namespaces; the laptop reaches only the login node's sshd.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from mkdoctor import cluster
from tests.harness.netns import tcp_connect
from tests.harness.procs import cmdline, descendants, terminate_tree
from tests.harness.slurm import Frontend, SlurmCluster, Software, run_subkernel, srun_template

pytestmark = pytest.mark.integration


@pytest.fixture
def cl(slurm) -> Iterator[tuple[SlurmCluster, Software]]:
    c, sw = slurm
    fault = c.sandbox.home / ".standin-fault"
    yield c, sw
    fault.unlink(missing_ok=True)
    left = c.wait_no_jobs(20)
    assert not left, f"jobs left behind: {left}"
    assert not kernels_on_nodes(c)


def kernels_on_nodes(c: SlurmCluster) -> list[str]:
    out = []
    for pid in c.node_pids():
        args = " ".join(cmdline(pid))
        if "WolframKernel" in args or "mkdoctor-relay" in args:
            out.append(f"{pid} {args[:120]}")
    return out


_port = iter(range(32100, 32900, 2))


def spec(c: SlurmCluster, kernel: Path | str, **kw) -> cluster.ClusterSpec:
    p = next(_port)
    return cluster.ClusterSpec(destination=c.sandbox.alias, kernel=str(kernel), link_ports=(p, p + 1),
                               ssh_config=str(c.sandbox.client_config), **kw)


def launch(c: SlurmCluster, s: cluster.ClusterSpec) -> subprocess.Popen:
    """Run the launch command as the front end does: a POSIX shell on the laptop."""
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    return c.laptop.popen(["sh", "-c", cluster.launch_command(s)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def local_ssh(proc: subprocess.Popen) -> int:
    """The pid of the ssh the launch command runs."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        for pid in [proc.pid, *descendants(proc.pid)]:
            args = cmdline(pid)
            if args and os.path.basename(args[0]) == "ssh":
                return pid
        time.sleep(0.05)
    raise AssertionError("no ssh process under the launch command")


def wait_job(c: SlurmCluster, state: str, timeout: float = 30) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        jobs = [j for j in c.jobs() if f" {state} " in f" {j} " and " mkdoctor-" in f" {j}"]
        if jobs:
            return jobs
        time.sleep(0.3)
    raise AssertionError(f"no {state} mkdoctor job: {c.jobs()}\n{c.logs()}")


def finish(proc: subprocess.Popen, timeout: float = 25) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        terminate_tree(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"the launch command did not end: {err}")
    return proc.returncode, out, err


# ------------------------------------------------------------------ the harness itself


def test_cluster_runs_srun_as_the_user_and_root_and_hides_the_nodes(cl) -> None:
    c, _ = cl
    done = c.login_ssh("id -un; srun -N2 hostname | sort; sinfo -h -o '%P %a'")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == c.sandbox.user
    assert lines[1:3] == ["node1", "node2"]
    root = c.slurm("srun", "-N1", "--partition=debug", "hostname")
    assert root.returncode == 0 and root.stdout.strip() in c.node_names, root.stderr
    # The laptop reaches the login node's sshd but no compute node.
    assert tcp_connect(c.laptop, "10.91.0.1", c.sandbox.port)
    assert not tcp_connect(c.laptop, c.node_addrs[0], 22, timeout=1)
    route = subprocess.run(c.laptop.argv(["ip", "route", "get", c.node_addrs[0]]),
                           capture_output=True, text=True)
    assert route.returncode != 0  # no route at all


# ------------------------------------------------------------------ the launch command


def test_link_carries_data_both_ways_and_the_job_ends_with_the_link(cl) -> None:
    c, sw = cl
    s = spec(c, sw.echo, partition="debug", time="00:05:00", cpus=1)
    fe = Frontend(c, s.link_ports, echo=True)
    proc = launch(c, s)
    try:
        assert fe.readline() == "connected"
        assert fe.readline() == "echo 0 ok"
        assert fe.readline() == "echo 1 ok"
        running = wait_job(c, "RUNNING")
        assert len(running) == 1
        fe.close()
        assert fe.readline() == "closed"
        rc, _, err = finish(proc)
        assert "kernel on node" in err
        assert rc == 0, err
    finally:
        fe.stop()


@pytest.mark.parametrize("how", ["sigterm-ssh", "sigkill-ssh", "sigterm-group", "sighup-ssh"])
def test_no_job_left_when_the_launch_command_is_killed(cl, how: str) -> None:
    c, sw = cl
    s = spec(c, sw.kernel, partition="debug", time="00:05:00")
    fe = Frontend(c, s.link_ports)
    proc = launch(c, s)
    try:
        assert fe.readline() == "connected"
        wait_job(c, "RUNNING")
        ssh = local_ssh(proc)
        if how == "sigterm-group":  # the front end ends the kernel's process group
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            os.kill(ssh, {"sigterm-ssh": signal.SIGTERM, "sigkill-ssh": signal.SIGKILL,
                          "sighup-ssh": signal.SIGHUP}[how])
        t0 = time.monotonic()
        assert c.wait_no_jobs(20) == [], c.logs()
        assert time.monotonic() - t0 < 20
        finish(proc)
    finally:
        fe.stop()


def test_no_job_left_when_the_kernel_exits_on_its_own(cl) -> None:
    c, sw = cl
    (c.sandbox.home / ".standin-fault").write_text("crash\n")
    s = spec(c, sw.kernel, partition="debug")
    fe = Frontend(c, s.link_ports, wait=20)
    proc = launch(c, s)
    try:
        rc, _, err = finish(proc)
        assert rc != 0  # the kernel's SIGSEGV, reported as the command's status
    finally:
        fe.stop()


def test_a_queued_request_is_cancelled_when_ssh_is_killed(cl) -> None:
    c, sw = cl
    s = spec(c, sw.kernel, partition="closed")  # State=DOWN: the job waits (PartitionDown)
    fe = Frontend(c, s.link_ports, wait=30)
    proc = launch(c, s)
    try:
        pending = wait_job(c, "PENDING")
        reason = c.slurm("squeue", "-h", "-o", "%r", "-j", pending[0].split()[0]).stdout.strip()
        assert reason == "PartitionDown"
        os.kill(local_ssh(proc), signal.SIGKILL)
        assert c.wait_no_jobs(20) == []
        finish(proc)
    finally:
        fe.stop()


def test_hostile_kernel_path_and_partition_reach_srun_as_typed(cl) -> None:
    c, sw = cl
    s = spec(c, sw.hostile, partition="debug")
    fe = Frontend(c, s.link_ports)
    proc = launch(c, s)
    try:
        assert fe.readline() == "connected"
        fe.close()
        rc, _, err = finish(proc)
        assert rc == 0, err
    finally:
        fe.stop()
    hostile = "x';touch pwned;'$(touch pwned)\"`touch pwned`"
    with pytest.raises(ValueError):  # a backquote never reaches the front end
        cluster.launch_command(spec(c, sw.kernel, partition=hostile))
    hostile = hostile.replace("`", "")
    s = spec(c, sw.kernel, partition=hostile)
    proc = launch(c, s)
    rc, _, err = finish(proc)
    assert rc != 0 and "invalid partition" in err.lower(), err
    assert not list(c.sandbox.home.glob("pwned")) and not Path("pwned").exists()
    assert not (c.sandbox.home.parent / "pwned").exists()


def test_the_login_side_ends_the_job_on_sighup_from_sshd(cl) -> None:
    """sshd ends a session's processes with SIGHUP when the connection drops: the relay
    on the login node must then cancel the job (its parent dies at the same time)."""
    c, sw = cl
    s = spec(c, sw.kernel, partition="debug")
    fe = Frontend(c, s.link_ports)
    proc = launch(c, s)
    try:
        assert fe.readline() == "connected"
        wait_job(c, "RUNNING")
        relays = [p for p in c.sandbox._pids_in_mntns() if "login" in cmdline(p)
                  and any("mkdoctor-relay" in a for a in cmdline(p))]
        assert len(relays) == 1
        os.kill(relays[0], signal.SIGHUP)
        assert c.wait_no_jobs(20) == []
        fe.close()  # ssh ends once the front end closes the link it saw end
        finish(proc)
    finally:
        fe.stop()


# ------------------------------------------------------------------ parallel subkernels


def test_subkernel_slots_and_the_parallel_files_srun_template(cl) -> None:
    """The cluster kernel's job holds 2 extra slots on 2 nodes; the parallel-kernels
    file's srun template, run as RemoteMachine would run it (`1` node, `2` link name,
    `4` protocol), starts a (stand-in) subkernel on the other node that connects to the
    master's link over the cluster network; the whole job ends with the link."""
    c, sw = cl
    s = spec(c, sw.kernel, partition="debug", subkernels=2)
    fe = Frontend(c, s.link_ports)
    proc = launch(c, s)
    try:
        assert fe.readline() == "connected"
        job, = [j.split()[0] for j in wait_job(c, "RUNNING")]
        info = c.slurm("squeue", "-h", "-j", job, "-o", "%C %D").stdout.split()
        assert info == ["3", "2"], info  # 3 CPUs (tasks) on 2 nodes
        text = cluster.parallel_kernels_file(str(sw.kernel), "14.1")
        # the master's side of a subkernel link listens on the login node's cluster address
        assert run_subkernel(c, srun_template(text, job), "node2") == "10.92.0.12"  # from node2
        fe.close()
        rc, _, err = finish(proc)
        assert c.wait_no_jobs(20) == [], err
    finally:
        fe.stop()


# ------------------------------------------------------------------ no port forwarding


@pytest.fixture
def no_forwarding(cl):
    c, _ = cl
    drop = c.sandbox.add_dropin("nofwd", "AllowTcpForwarding no")
    c.sandbox.reload()
    yield
    drop.unlink()
    c.sandbox.reload()


def test_stdio_link_needs_no_forwarding(cl, no_forwarding) -> None:
    c, sw = cl
    forward = spec(c, sw.echo, partition="debug")
    proc = launch(c, forward)  # the default way fails at once: the forwards are refused
    rc, _, err = finish(proc)
    assert rc != 0 and "forwarding failed" in err, err
    s = spec(c, sw.echo, partition="debug", via="stdio")
    fe = Frontend(c, s.link_ports, echo=True)
    proc = launch(c, s)
    try:
        assert fe.readline() == "connected"
        assert fe.readline() == "echo 0 ok"
        assert fe.readline() == "echo 1 ok"
        wait_job(c, "RUNNING")
        fe.close()
        rc, _, err = finish(proc)
        assert rc == 0, err
    finally:
        fe.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stdio_link_no_job_left_when_the_laptop_relay_is_killed(cl, no_forwarding, sig) -> None:
    c, sw = cl
    s = spec(c, sw.kernel, partition="debug", via="stdio")
    fe = Frontend(c, s.link_ports)
    proc = launch(c, s)
    try:
        assert fe.readline() == "connected"
        wait_job(c, "RUNNING")
        relay = [p for p in [proc.pid, *descendants(proc.pid)] if "laptop" in cmdline(p)]
        assert relay
        os.kill(relay[0], sig)
        assert c.wait_no_jobs(20) == [], c.logs()
        finish(proc)
    finally:
        fe.stop()
