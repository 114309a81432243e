"""MK601-MK605 against a real Slurm (tests/harness/slurm.py), run as the user runs them:
``mkdoctor`` on the laptop (its own network namespace), the login node over real ssh.
The kernel is the stand-in (tests/standin_kernel.py): Mathematica cannot be installed."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from mkdoctor import cluster
from tests.harness.slurm import SlurmCluster, Software
from tests.helpers import by_id, json_report, mkdoctor_env, stop_when

pytestmark = pytest.mark.integration

LOGIN = "MK301,MK302,MK303,MK304"
CLUSTER = "MK601,MK602,MK603,MK604,MK605"
FAST = ("--offline", "--timeout", "3", "--kernel-timeout", "10", "--deadline", "90")


@pytest.fixture
def cl(slurm) -> Iterator[tuple[SlurmCluster, Software]]:
    c, sw = slurm
    yield c, sw
    (c.sandbox.home / ".standin-fault").unlink(missing_ok=True)
    assert c.wait_no_jobs(20) == [], "a check left a job behind"


def check(c: SlurmCluster, *extra: str, only: str = CLUSTER, config_dir: Path | None = None,
          host: bool = True) -> dict:
    args = ["--ssh-config", str(c.sandbox.client_config)] + (["--host", "sandbox"] if host else [])
    data, done = json_report(*args, "--only", f"{LOGIN},MK401,MK402,{only}", *FAST, *extra,
                             netns=c.laptop.name, config_dir=config_dir)
    assert "Traceback" not in done.stderr, done.stderr
    return by_id(data)


def setup_files(c: SlurmCluster, tmp_path: Path) -> tuple[Path, Path, Path]:
    """For a setup run: a copy of the login node's ssh config (0600), an empty HOME and the
    config directory to use."""
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(c.sandbox.client_config.read_bytes())
    cfg.chmod(0o600)
    home = tmp_path / "home"
    home.mkdir()
    return cfg, home, tmp_path / "conf"


def test_everything_passes_and_no_job_is_left(cl) -> None:
    c, sw = cl
    r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel), "--partition", "debug",
              "--time", "00:10:00", "--cpus", "1")
    for cid in CLUSTER.split(","):
        assert r[cid]["status"] == "pass", (cid, r[cid])
    assert r["MK603"]["summary"].startswith("the kernel answered on the compute node node")
    assert c.wait_no_jobs(20) == []


def test_non_cluster_run_skips_the_cluster_checks_with_the_reason() -> None:
    data, done = json_report("--host", "203.0.113.9", "--only", CLUSTER, "--offline")
    for cid, res in by_id(data).items():
        assert res["status"] == "skip"
        assert "not a cluster profile" in res["summary"], res
        assert "--scheduler slurm" in res["fix"]


def test_mk404_skips_on_a_cluster_run() -> None:
    data, _ = json_report("--host", "203.0.113.9", "--scheduler", "slurm", "--only", "MK404", "--offline")
    res = by_id(data)["MK404"]
    assert res["status"] == "skip" and "MK605" in res["summary"]


@pytest.mark.parametrize("partition,reason", [("closed", "partition-state"),
                                              ("staff", "not-allowed"),
                                              ("nosuch", "no-such-partition")])
def test_mk601_partition_faults(cl, partition: str, reason: str) -> None:
    c, sw = cl
    r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel), "--partition", partition)
    assert r["MK601"]["status"] == "fail", r["MK601"]
    assert r["MK601"]["fix"]
    for cid in ("MK602", "MK603", "MK604", "MK605"):
        assert r[cid]["status"] == "skip"
    assert "debug" in r["MK601"]["fix"] or reason == "not-allowed"


def test_mk601_finds_the_default_partition(cl) -> None:
    c, sw = cl
    r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel), only="MK601")
    assert r["MK601"]["status"] == "pass" and "debug (the default)" in r["MK601"]["summary"]


def test_mk602_time_limit_over_the_partition_maximum_never_starts(cl) -> None:
    c, sw = cl
    r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel), "--partition", "short",
              "--time", "02:00:00", "--kernel-timeout", "4", only="MK601,MK602")
    assert r["MK602"]["status"] == "fail", r["MK602"]
    assert "PartitionTimeLimit" in r["MK602"]["summary"]


@contextmanager
def busy(c: SlurmCluster, seconds: int) -> Iterator[None]:
    """Every node of the debug partition taken by another job (running) for the block."""
    hog = c.slurm("sbatch", "-N2", "--exclusive", "-p", "debug", "-J", "hog", "-o", "/dev/null",
                  "--wrap", f"sleep {seconds}")
    assert hog.returncode == 0, hog.stderr
    job = hog.stdout.split()[-1]
    try:
        end = time.monotonic() + 20
        while "RUNNING" not in c.slurm("squeue", "-h", "-j", job, "-o", "%T").stdout:
            assert time.monotonic() < end
            time.sleep(0.3)
        yield
    finally:
        c.slurm("scancel", job)


def test_mk602_busy_cluster_warns_with_squeue_reason(cl) -> None:
    c, sw = cl
    with busy(c, 60):
        r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel), "--partition", "debug",
                  "--kernel-timeout", "4", only="MK601,MK602")
        assert r["MK602"]["status"] == "warn", r["MK602"]
        assert "Resources" in r["MK602"]["summary"] or "Priority" in r["MK602"]["summary"]


@pytest.mark.parametrize("only", ["MK601,MK602", "MK601,MK603"])
def test_interrupted_while_a_test_job_waits_cancels_it_at_once(cl, only: str) -> None:
    """SIGTERM while MK602's (or MK603's) test job waits in the queue of a busy cluster,
    under a 60 s kernel timeout: the job is cancelled at once, as at the run's deadline.
    The check's own script would cancel it, but it goes with the ssh session, and its
    srun held the job until its timeout (60 s here)."""
    c, sw = cl
    with busy(c, 120):
        argv = ["--ssh-config", str(c.sandbox.client_config), "--host", "sandbox", "--only",
                f"{LOGIN},MK401,MK402,{only}", "--offline", "--timeout", "3",
                "--kernel-timeout", "60", "--deadline", "120", "--scheduler", "slurm",
                "--kernel", str(sw.kernel), "--partition", "debug", "--format", "json"]
        proc = subprocess.Popen(c.laptop_argv([sys.executable, "-m", "mkdoctor", *argv]),
                                env=mkdoctor_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def ours() -> list[str]:
            return [j for j in c.jobs() if f" {cluster.JOB_PREFIX}-check-" in j]

        try:
            stop_when(proc, lambda: bool(ours()), "the test job's submission", within=60)
            gone = time.monotonic() + 5
            while ours():
                assert time.monotonic() < gone, ours()
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_mk602_refused_request_says_what_srun_said(cl) -> None:
    c, sw = cl
    r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel), "--licenses", "mathematica:9",
              only="MK601,MK602")
    assert r["MK602"]["status"] == "fail"
    assert "licen" in r["MK602"]["summary"].lower(), r["MK602"]


def test_mk603_node_locked_licence(cl) -> None:
    c, sw = cl
    r = check(c, "--scheduler", "slurm", "--kernel", str(sw.locked))
    assert r["MK402"]["status"] == "pass"  # the licence works on the login node
    res = r["MK603"]
    assert res["status"] == "fail", res
    assert "node-locked" in res["summary"] and "node" in res["summary"]
    assert "MathLM" in res["fix"]
    assert r["MK605"]["status"] == "skip"


def test_mk603_kernel_only_on_the_login_node(cl) -> None:
    c, sw = cl
    r = check(c, "--scheduler", "slurm", "--kernel", str(sw.login_only))
    assert r["MK401"]["status"] == "pass"
    res = r["MK603"]
    assert res["status"] == "fail" and "does not exist on the compute node" in res["summary"], res


def test_mk604_fails_when_the_login_node_refuses_forwarding(cl) -> None:
    c, sw = cl
    drop = c.sandbox.add_dropin("nofwd", "AllowTcpForwarding no")
    c.sandbox.reload()
    try:
        r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel))
        assert r["MK604"]["status"] == "fail", r["MK604"]
        assert "refuses reverse forwards" in r["MK604"]["summary"]
        assert "--cluster-link stdio" in r["MK604"]["fix"]  # the way that was proven to work
        assert r["MK605"]["status"] == "skip"
        # ... and with it, the whole chain passes with forwarding still off
        r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel), "--cluster-link", "stdio")
        for cid in ("MK604", "MK605"):
            assert r[cid]["status"] == "pass", (cid, r[cid])
        assert "the ssh session's own stdio" in r["MK604"]["summary"]
    finally:
        drop.unlink()
        c.sandbox.reload()


def test_mk605_runs_the_profiles_launch_command(cl, tmp_path: Path) -> None:
    c, sw = cl
    from mkdoctor.profile import Profile, save_profile
    import os

    spec = cluster.ClusterSpec(destination="sandbox", kernel=str(sw.kernel), link_ports=(31515, 31516),
                               partition="debug", time="00:05:00",
                               ssh_config=str(c.sandbox.client_config))
    prof = Profile(name="hpc", host="sandbox", ssh_config=str(c.sandbox.client_config),
                   kernel=str(sw.kernel), link_ports=[31515, 31516], scheduler="slurm",
                   partition="debug", time="00:05:00", launch_command=cluster.launch_command(spec),
                   mlopen_arguments=cluster.mlopen(spec), path=tmp_path / "profiles" / "hpc.toml")
    os.makedirs(tmp_path / "profiles")
    save_profile(prof)
    r = check(c, "--profile", "hpc", config_dir=tmp_path, host=False)
    assert r["MK605"]["status"] == "pass", r["MK605"]
    assert "the profile hpc's launch command" in " ".join(r["MK605"]["details"])
    # a cluster profile whose launch command would run the kernel on the login node
    prof.launch_command = f"ssh -F {c.sandbox.client_config} sandbox {sw.kernel} -wstp"
    save_profile(prof)
    r = check(c, "--profile", "hpc", config_dir=tmp_path, host=False)
    assert r["MK605"]["status"] == "fail" and "through the scheduler" in r["MK605"]["summary"]


def test_mk605_kernel_that_outlives_its_link_still_leaves_no_job(cl) -> None:
    c, sw = cl
    (c.sandbox.home / ".standin-fault").write_text("link-linger\n")
    r = check(c, "--scheduler", "slurm", "--kernel", str(sw.kernel))
    # the relay on the node ends a kernel that does not exit when its link closes
    assert r["MK605"]["status"] == "pass", r["MK605"]
    assert c.wait_no_jobs(20) == []


def test_setup_for_the_cluster_writes_a_cluster_profile_and_proves_it(cl, tmp_path) -> None:
    """`mkdoctor setup --scheduler slurm` as a user runs it: the login node reached with
    real ssh from the laptop, MK601 picks the partition, step 9 proves the cluster launch
    command end to end (MK601-MK605); the profile holds the cluster fields and its
    launch command, and a later `mkdoctor --profile` run passes the cluster checks."""
    import tomllib

    from tests.helpers import run_mkdoctor

    c, sw = cl
    cfg, home, confdir = setup_files(c, tmp_path)
    done = run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", "--host", "sandbox",
                        "--name", "clu", "--scheduler", "slurm", "--kernel", str(sw.kernel),
                        "--time", "00:10:00", "--timeout", "5", netns=c.laptop.name,
                        config_dir=confdir, env={"HOME": str(home)}, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    out = done.stdout
    step9 = out.split("Proving the cluster launch command on a compute node")[1].split("\n\n")[0]
    assert "pass  MK605 node-kernel-link" in step9 and "MK404" not in step9, out
    prof = tomllib.loads(next(confdir.rglob("clu.toml")).read_text())
    flat = {**prof, **prof.get("frontend", {}), **prof.get("cluster", {})}
    # no --partition given: setup took MK601's PARTITION fact (the cluster's default)
    assert flat.get("scheduler") == "slurm" and flat.get("partition") == "debug", prof
    assert cluster.is_cluster_command(flat["launch_command"]), flat["launch_command"]
    assert c.wait_no_jobs(20) == []
    data, again = json_report("--profile", "clu", "--only", f"{LOGIN},{CLUSTER}", *FAST,
                              netns=c.laptop.name, config_dir=confdir, env={"HOME": str(home)})
    r = by_id(data)
    for cid in CLUSTER.split(","):
        assert r[cid]["status"] == "pass", (cid, r[cid])


def test_setup_for_the_cluster_stops_at_a_partition_that_does_not_exist(cl, tmp_path) -> None:
    from tests.helpers import run_mkdoctor

    c, sw = cl
    cfg, home, confdir = setup_files(c, tmp_path)
    done = run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", "--host", "sandbox",
                        "--name", "clu2", "--scheduler", "slurm", "--kernel", str(sw.kernel),
                        "--partition", "nosuch", netns=c.laptop.name, config_dir=confdir,
                        env={"HOME": str(home)}, timeout=240)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "there is no partition 'nosuch'" in done.stdout + done.stderr
    assert not list(confdir.rglob("clu2.toml")), "nothing is written when setup stops"
    assert cfg.read_bytes() == c.sandbox.client_config.read_bytes()


def test_questionnaire_offers_the_partitions_and_saves_the_choice(cl, tmp_path) -> None:
    """`mkdoctor setup --scheduler slurm` on a real terminal without --partition: the
    question lists sinfo's partitions with the cluster's default marked and proposed;
    the one picked (not the default) is checked again by MK601, proven in step 9 and
    saved in the profile."""
    import io
    import sys

    import pexpect
    import tomllib

    from tests.helpers import ROOT, mkdoctor_env

    c, sw = cl
    cfg, home, confdir = setup_files(c, tmp_path)
    env = mkdoctor_env(confdir, HOME=str(home), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    env.pop("CI", None)  # a real terminal: the questions are asked
    env.pop("SSH_AUTH_SOCK", None)
    child = pexpect.spawn("ip", ["netns", "exec", c.laptop.name, sys.executable, "-m", "mkdoctor",
                                 "setup", "--offline", "--ssh-config", str(cfg), "--host", "sandbox",
                                 "--name", "pick", "--scheduler", "slurm", "--kernel", str(sw.kernel),
                                 "--time", "00:01:00", "--timeout", "5"],
                          env=env, cwd=str(ROOT), encoding="utf-8", timeout=90, dimensions=(40, 200))
    child.logfile_read = seen = io.StringIO()
    try:
        child.expect("Which key should the front end use")
        child.send("\r")  # the alias's own key
        # the partitions that take no job of this user are said, not offered
        child.expect(r"not offered: closed \(the partition closed is DOWN\); staff \(the "
                     r"partition staff admits only the groups root")
        child.expect("Which partition")
        esc = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"
        child.expect(f"» {esc}debug  \\(the default\\)")  # the default is marked and proposed
        child.expect(r"short  \(jobs up to 00:01:00\)")  # the whole list is drawn
        menu = re.sub(esc, "", seen.getvalue().rsplit("Which partition", 1)[1])
        order = re.findall(r"^\s*»?\s*(\w+)(?:  \(.*\))?\s*$", menu, re.M)
        assert order == ["debug", "short"], menu
        child.send("\x1b[B\r")  # debug -> short
        child.expect(r"pass +MK601 scheduler-found")
        child.expect(r"Parallel subkernels beside the kernel in its job")
        child.send("\r")  # the proposed 0
        i = child.expect(["Link ports", "Write these files"])
        if i == 0:
            child.send("\r")
            child.expect("Write these files")
        child.send("y")
        while child.expect([r"Apply this on the remote host", r"\[12\] Done"]) == 0:
            child.send("n")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    out = seen.getvalue()
    assert child.exitstatus == 0, out[-4000:]
    step9 = out.split("Proving the cluster launch command on a compute node")[1]
    assert re.search(r"pass +MK605 node-kernel-link", step9), out[-4000:]
    prof = tomllib.loads(next(confdir.rglob("pick.toml")).read_text())
    flat = {**prof, **prof.get("frontend", {}), **prof.get("cluster", {})}
    assert flat.get("partition") == "short" and flat.get("time") == "00:01:00", prof
    assert "--partition=short" in flat["launch_command"], flat["launch_command"]
