"""A cluster whose kernel needs ``module load`` (issue 12: "the kernel path exists on the
login node but not on the nodes, or only after module load"), against the real Slurm of
tests/harness/slurm.py and Debian's real environment-modules.

The modulefile "mathematica/14.1" (shown to the login node and to the compute nodes at
/etc/environment-modules/modules, through their private mount namespaces) puts the
stand-in kernel's directory on PATH and sets the environment the kernel needs to get a
licence, as a site's module sets a licence variable: without the module the stand-in
(tests/standin_kernel.py; Mathematica cannot be installed here) reads the user's
~/.standin-fault and fails with the licence message; with it, ``STANDIN_FAULT=none`` says
there is no fault.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import skip_or_fail
from tests.harness.netns import netns_unavailable_reason
from tests.harness.slurm import SlurmCluster, Software, slurm_unavailable_reason
from tests.helpers import by_id, json_report, run_mkdoctor

pytestmark = pytest.mark.integration

ENV_MODULES_INIT = "/usr/share/modules/init/sh"
MODULEFILE = "#%Module1.0\n## mkdoctor test: a fake Mathematica\nprepend-path PATH {bin}\nsetenv STANDIN_FAULT none\n"
LOGIN = "MK301,MK302,MK303,MK304"
FAST = ("--offline", "--timeout", "5", "--kernel-timeout", "10", "--deadline", "120")


@pytest.fixture(scope="module")
def modcluster() -> Iterator[tuple[SlurmCluster, Software]]:
    reason = slurm_unavailable_reason() or netns_unavailable_reason()
    if reason:
        skip_or_fail(reason)
    if not os.path.exists(ENV_MODULES_INIT):
        pytest.fail("environment-modules is not installed (scripts/test.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="mkd-slurmm-", dir="/tmp"))
    root.chmod(0o755)
    sw = Software(root)
    mods = root / "modulefiles"
    (mods / "mathematica").mkdir(parents=True)
    (mods / "mathematica" / "14.1").write_text(MODULEFILE.format(bin=sw.kernel.parent))
    for d in (mods, mods / "mathematica"):
        d.chmod(0o755)
    shown = {"/etc/environment-modules/modules": mods}
    try:
        with SlurmCluster(root / "cluster", nodes=1, login_mounts=shown,
                          node_mounts={**sw.node_mounts, **shown}) as c:
            fault = c.sandbox.home / ".standin-fault"
            fault.write_text("licence\n")  # the kernel's licence comes with the module only
            os.chown(fault, c.sandbox.uid, c.sandbox.gid)
            yield c, sw
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_without_the_module_the_node_kernel_has_no_licence(modcluster) -> None:
    """The fault is real: the kernel named by its absolute path (read as plain, no module)
    starts on the node without the module's environment and has no licence (MK603 fails),
    and no job is left."""
    c, sw = modcluster
    data, done = json_report("--ssh-config", str(c.sandbox.client_config), "--host", "sandbox",
                             "--scheduler", "slurm", "--kernel", str(sw.kernel),
                             "--only", f"{LOGIN},MK401,MK601,MK602,MK603", *FAST,
                             netns=c.laptop.name)
    r = by_id(data)
    assert r["MK603"]["status"] == "fail" and "licence" in r["MK603"]["summary"], r["MK603"]
    assert c.wait_no_jobs(20) == []


def test_setup_loads_the_module_on_the_compute_node(modcluster, tmp_path) -> None:
    """`mkdoctor setup --scheduler slurm --kernel WolframKernel --subkernels 1`: MK401
    finds the kernel through the module on the login node, the profile keeps the module,
    the cluster launch command loads it on the node before the kernel starts, step 9
    proves that command end to end (MK603, MK605, with the subkernel slot), a later
    `mkdoctor --profile` run passes them again, and the written parallel-kernels file
    starts a subkernel in the kernel's job (test below)."""
    import tomllib

    c, sw = modcluster
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(c.sandbox.client_config.read_bytes())
    cfg.chmod(0o600)
    home = tmp_path / "home"
    home.mkdir()
    confdir = tmp_path / "conf"
    done = run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", "--host", "sandbox",
                        "--name", "modc", "--scheduler", "slurm", "--kernel", "WolframKernel",
                        "--time", "00:10:00", "--subkernels", "1", "--timeout", "5", "--kernel-timeout", "10",
                        netns=c.laptop.name, config_dir=confdir, env={"HOME": str(home)},
                        timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "module load mathematica/14.1 (the launch command loads it on the compute node" in done.stdout
    prof = tomllib.loads(next(confdir.rglob("modc.toml")).read_text())
    flat = {**prof, **prof.get("frontend", {}), **prof.get("cluster", {})}
    assert flat["module"] == "mathematica/14.1" and flat["module_init"] == ENV_MODULES_INIT, prof
    assert flat["kernel"] in ("WolframKernel", str(sw.kernel)), prof  # as typed, or found
    assert "module load mathematica/14.1" in flat["launch_command"], flat["launch_command"]
    assert flat["subkernels"] == 1 and "--ntasks=2" in flat["launch_command"], flat
    step9 = done.stdout.split("Proving the cluster launch command on a compute node")[1]
    assert "pass  MK603" in step9 and "pass  MK605" in step9, step9
    assert c.wait_no_jobs(20) == []
    data, _ = json_report("--profile", "modc", "--only", f"{LOGIN},MK401,MK601,MK602,MK603,MK604,MK605",
                          *FAST, netns=c.laptop.name, config_dir=confdir, env={"HOME": str(home)})
    r = by_id(data)
    for cid in ("MK603", "MK605"):
        assert r[cid]["status"] == "pass", (cid, r[cid])
    assert c.wait_no_jobs(20) == []

    subkernel_from_the_written_file(c, flat, next(confdir.rglob("modc-parallel-kernels.wl")), home)


def subkernel_from_the_written_file(c: SlurmCluster, prof: dict, path: Path, home: Path) -> None:
    """The profile's launch command, run as the front end runs it, holds a job with one
    subkernel slot; the parallel-kernels file's srun template, run as RemoteMachine runs
    it (`1` the node, `2` the link name, `4` the protocol), starts the subkernel as a step
    of that job with the module loaded: it connects to the master's link on the login
    node. The same template without the module (the fault the module mends) fails (the
    kernel not found, or without its licence) and connects nowhere. The job ends with the link."""
    import re
    import subprocess

    from mkdoctor import cluster
    from tests.harness.slurm import Frontend, run_subkernel, srun_template
    from tests.test_slurm_launch import finish, wait_job

    text = path.read_text()
    assert cluster.read_parallel_kernels(text)[1:3] == ("mathematica/14.1", ENV_MODULES_INIT)
    fe = Frontend(c, tuple(prof["link_ports"]))
    env = {**os.environ, "HOME": str(home)}
    env.pop("SSH_AUTH_SOCK", None)
    proc = c.laptop.popen(["sh", "-c", prof["launch_command"]], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        assert fe.readline() == "connected"
        job, = [j.split()[0] for j in wait_job(c, "RUNNING")]
        template = srun_template(text, job)
        plain = re.sub(r"sh -c '[^']*' ", "", template)
        assert plain != template and "module" not in plain
        line = (plain.replace("`1`", "node1").replace("`2`", "1@10.92.0.1,2@10.92.0.1")
                .replace("`4`", "-linkprotocol TCPIP"))
        bare = c.laptop.exec(c.ssh_argv(line), check=False, timeout=60)
        out = bare.stdout + bare.stderr
        # a name on PATH only through the module is not found; a full path has no licence
        assert bare.returncode != 0 and (
            "valid password" in out if "/" in prof["kernel"] else "No such file" in out), bare
        assert run_subkernel(c, template, "node1") == "10.92.0.11"  # from node1, module loaded
        fe.close()
        finish(proc)
        assert c.wait_no_jobs(20) == []
    finally:
        fe.stop()
        if proc.poll() is None:
            proc.kill()
