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
    """`mkdoctor setup --scheduler slurm --kernel WolframKernel`: MK401 finds the kernel
    through the module on the login node, the profile keeps the module, the cluster launch
    command loads it on the node before the kernel starts, step 9 proves that command end
    to end (MK603, MK605), and a later `mkdoctor --profile` run passes them again."""
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
                        "--time", "00:10:00", "--timeout", "5", "--kernel-timeout", "10",
                        netns=c.laptop.name, config_dir=confdir, env={"HOME": str(home)},
                        timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "module load mathematica/14.1 (the launch command loads it on the compute node" in done.stdout
    prof = tomllib.loads(next(confdir.rglob("modc.toml")).read_text())
    flat = {**prof, **prof.get("frontend", {}), **prof.get("cluster", {})}
    assert flat["module"] == "mathematica/14.1" and flat["module_init"] == ENV_MODULES_INIT, prof
    assert flat["kernel"] in ("WolframKernel", str(sw.kernel)), prof  # as typed, or found
    assert "module load mathematica/14.1" in flat["launch_command"], flat["launch_command"]
    step9 = done.stdout.split("Proving the cluster launch command on a compute node")[1]
    assert "pass  MK603" in step9 and "pass  MK605" in step9, step9
    assert c.wait_no_jobs(20) == []
    data, _ = json_report("--profile", "modc", "--only", f"{LOGIN},MK401,MK601,MK602,MK603,MK604,MK605",
                          *FAST, netns=c.laptop.name, config_dir=confdir, env={"HOME": str(home)})
    r = by_id(data)
    for cid in ("MK603", "MK605"):
        assert r[cid]["status"] == "pass", (cid, r[cid])
    assert c.wait_no_jobs(20) == []
