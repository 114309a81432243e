"""Kernels that only ``module load`` puts on PATH (issue 14), with Debian's REAL module
systems: ``environment-modules`` (installed by scripts/test.sh) and ``lmod`` (which
conflicts with it as a package, so scripts/test.sh downloads its .deb and the test unpacks
it and shows it at /usr/share/lmod, /etc/lmod and /etc/profile.d for the sandbox's sshd
only, through its private mount namespace). A modulefile for a fake "mathematica/14.1"
puts the stand-in kernel's directory (tests/standin_kernel.py: Mathematica cannot be
installed here) on PATH. MK401 must find it through the module, MK402 start it, and the
launch command (MK404) load the module first, under bash, tcsh and fish login shells.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mkdoctor.kernel import KernelPath, module_scan_script, parse_reading
from mkdoctor.launch import LaunchSpec, kernel_argv, kernel_prefix, remote_kernel_command
from tests.test_kernel_checks import LOGIN, install_standin, nothing_left, own_pair, report  # noqa: F401

ENV_MODULES_INIT = "/usr/share/modules/init/sh"
LMOD_DEBS = "/var/cache/mkdoctor-tests"
TCL_MODULEFILE = "#%Module1.0\n## mkdoctor test: a fake Mathematica\nprepend-path PATH {bin}\n"
LUA_MODULEFILE = 'prepend_path("PATH", "{bin}")\n'


# ------------------------------------------------------------------ pure


def test_kernel_prefix_quotes_for_every_login_shell() -> None:
    words = kernel_prefix("mathematica/14.1", ENV_MODULES_INIT)
    assert words[:2] == ["sh", "-c"]
    assert "module load mathematica/14.1" in words[2]
    for bad in ("math'x", "m;rm", "m x", "m$(id)", "m!x", "m\\x", ""):
        with pytest.raises(ValueError):
            kernel_prefix(bad or "x", ENV_MODULES_INIT if bad else "relative/init")
    assert kernel_prefix("", "") == []


def test_launch_argv_with_a_module() -> None:
    spec = LaunchSpec(destination="mk-h", kernel="/k/WolframKernel", mode="tunnel",
                      link_ports=(1, 2), module="mathematica/14.1", module_init=ENV_MODULES_INIT)
    argv = kernel_argv(spec)
    assert argv[:2] == ["sh", "-c"] and argv[3:5] == ["/k/WolframKernel", "-wstp"]
    reading = KernelPath("math", "/k/WolframKernel", "module", "mathematica/14.1", ENV_MODULES_INIT)
    assert remote_kernel_command(reading, ["-subkernel"]).endswith("/k/WolframKernel -subkernel")


@pytest.mark.parametrize("shell", ["sh", "bash", "tcsh", "fish"])
def test_the_prefix_runs_under_each_login_shell(shell: str, tmp_path: Path) -> None:
    """The remote command's module prefix as each login shell reads it (the real shells):
    the words after it arrive as they are. A stand-in init script defines ``module``."""
    if not shutil.which(shell):
        pytest.fail(f"{shell} is not installed (scripts/test.sh installs it)")
    init = tmp_path / "init.sh"
    init.write_text('module() { [ "$1" = load ] && printf "loaded %s\\n" "$2"; }\n')
    words = kernel_prefix("mathematica/14.1", str(init)) + ["printf", "[%s]", "a b", "$HOME"]
    import shlex

    line = " ".join(shlex.quote(w) for w in words)
    done = subprocess.run([shutil.which(shell), "-c", line], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.stdout == "loaded mathematica/14.1\n[a b][$HOME]", (done.stdout, done.stderr)


# ------------------------------------------------------------------ environment modules, locally


def _modulefiles(root: Path, kernel_dir: Path, lua: bool = False) -> Path:
    mods = root / "modulefiles"
    (mods / "mathematica").mkdir(parents=True, exist_ok=True)
    name = "14.1.lua" if lua else "14.1"
    text = (LUA_MODULEFILE if lua else TCL_MODULEFILE).format(bin=kernel_dir)
    (mods / "mathematica" / name).write_text(text)
    for d in (root, mods, mods / "mathematica"):
        d.chmod(0o755)
    (mods / "mathematica" / name).chmod(0o644)
    return mods


def test_scan_finds_the_module_with_real_environment_modules(tmp_path: Path) -> None:
    """The scan script under the real sh and the real environment-modules: with the
    modulefile on MODULEPATH it reports the module and the kernel; without, nothing."""
    if not os.path.exists(ENV_MODULES_INIT):
        pytest.fail("environment-modules is not installed (scripts/test.sh installs it)")
    kernel = install_standin(tmp_path / "opt", "Mathematica/14.1/Executables/WolframKernel")
    mods = _modulefiles(tmp_path, kernel.parent)
    res = "res() { printf '%s' \"$1\"; }\n"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODULEPATH": str(mods)}
    done = subprocess.run(["sh", "-c", res + module_scan_script()], capture_output=True,
                          text=True, timeout=60, env=env)
    r = parse_reading(done.stdout)
    assert [(m.module, m.path) for m in r.modules] == [("mathematica/14.1", str(kernel))], done
    env["MODULEPATH"] = str(tmp_path / "empty")
    done = subprocess.run(["sh", "-c", res + module_scan_script()], capture_output=True,
                          text=True, timeout=60, env=env)
    r = parse_reading(done.stdout)
    assert r.modules == [] and ENV_MODULES_INIT in r.module_systems, done


# ------------------------------------------------------------------ over a real sshd

integration = pytest.mark.integration


def _env_modules_box(sandbox_factory, sandbox_dir: Path, with_module: bool, shell: str):
    kernel = install_standin(sandbox_dir / "opt", "Mathematica/14.1/Executables/WolframKernel")
    mods = _modulefiles(sandbox_dir / "mods", kernel.parent) if with_module else (
        sandbox_dir / "mods" / "modulefiles")
    mods.mkdir(parents=True, exist_ok=True)
    # The system's modulespath lists /etc/environment-modules/modules: shown as ours.
    box = sandbox_factory(bind_mounts={"/etc/environment-modules/modules": mods},
                          login_shell=shutil.which(shell))
    return box, kernel


@integration
@pytest.mark.parametrize("shell", ["bash", "tcsh", "fish"])
def test_environment_modules_kernel_found_started_and_launched(shell: str, sandbox_factory,
                                                               sandbox_dir: Path,
                                                               nothing_left: None) -> None:
    box, kernel = _env_modules_box(sandbox_factory, sandbox_dir, True, shell)
    # The fault is real: a non-interactive ssh command has no `module` and no kernel.
    plain = box.ssh("command -v WolframKernel; type module")
    assert str(kernel) not in plain.stdout
    checks = report(box, f"{LOGIN},MK401,MK402,MK404", "--kernel-timeout", "10", "--mode", "tunnel",
                    *own_pair())
    mk401 = checks["MK401"]
    assert mk401["status"] == "pass", mk401
    assert mk401["summary"] == f"{kernel} from module mathematica/14.1 (version 14.1)"
    details = "\n".join(mk401["details"])
    assert f"module load mathematica/14.1 && exec" in details and ENV_MODULES_INIT in details
    assert checks["MK402"]["status"] == "pass", checks["MK402"]
    assert checks["MK404"]["status"] == "pass", checks["MK404"]
    assert "module load mathematica/14.1" in "\n".join(checks["MK404"]["details"])


@integration
def test_no_module_no_kernel(sandbox_factory, sandbox_dir: Path, nothing_left: None) -> None:
    box, _ = _env_modules_box(sandbox_factory, sandbox_dir, False, "bash")
    checks = report(box, f"{LOGIN},MK401", "--kernel", "math")
    mk401 = checks["MK401"]
    assert mk401["status"] == "fail", mk401
    assert any("has no mathematica/wolfram module" in d for d in mk401["details"]), mk401


@integration
def test_bare_kernel_name_from_a_module(sandbox_factory, sandbox_dir: Path,
                                        nothing_left: None) -> None:
    box, kernel = _env_modules_box(sandbox_factory, sandbox_dir, True, "bash")
    checks = report(box, f"{LOGIN},MK401,MK402", "--kernel", "WolframKernel", "--kernel-timeout", "10")
    assert checks["MK401"]["status"] == "pass", checks["MK401"]
    assert checks["MK401"]["summary"] == f"WolframKernel: from module mathematica/14.1 ({kernel})"
    assert checks["MK402"]["status"] == "pass", checks["MK402"]


def _lmod_tree(root: Path) -> Path:
    debs = sorted(glob.glob(f"{LMOD_DEBS}/lmod_*.deb"))
    if not debs:
        pytest.fail(f"no lmod .deb in {LMOD_DEBS} (scripts/test.sh downloads it: apt-get download lmod)")
    tree = root / "lmod-deb"
    subprocess.run(["dpkg-deb", "-x", debs[-1], str(tree)], check=True, timeout=120)
    return tree


def _lmod_box(sandbox_factory, sandbox_dir: Path, modulepath: Path):
    tree = _lmod_tree(sandbox_dir)
    etc_lmod = tree / "etc" / "lmod"
    (etc_lmod / "modulespath").write_text(f"{modulepath}\n")
    return sandbox_factory(bind_mounts={
        "/usr/share/lmod": tree / "usr" / "share" / "lmod",
        "/usr/lib/lmod": tree / "usr" / "lib" / "lmod",
        "/etc/lmod": etc_lmod,
        "/etc/profile.d": tree / "etc" / "profile.d",
    })


@integration
def test_lmod_hierarchy_module_is_named_with_module_spider(sandbox_factory, sandbox_dir: Path,
                                                           nothing_left: None) -> None:
    """A module hierarchy: mathematica/14.1 is visible only after gcc/12 is loaded, so
    `module avail` does not show it and loading it alone fails; Lmod's spider lists it, and
    MK401 names it with the way out (module spider, a wrapper)."""
    kernel = install_standin(sandbox_dir / "opt", "Mathematica/14.1/Executables/WolframKernel")
    compiler = _modulefiles(sandbox_dir / "compiler-gcc-12", kernel.parent, lua=True)
    core = sandbox_dir / "core" / "modulefiles"
    (core / "gcc").mkdir(parents=True)
    (core / "gcc" / "12.lua").write_text(f'prepend_path("MODULEPATH", "{compiler}")\n')
    for d in (sandbox_dir / "core", core, core / "gcc"):
        d.chmod(0o755)
    (core / "gcc" / "12.lua").chmod(0o644)
    box = _lmod_box(sandbox_factory, sandbox_dir, core)
    mk401 = report(box, f"{LOGIN},MK401")["MK401"]
    assert mk401["status"] == "fail", mk401
    assert mk401["summary"] == ("no Wolfram kernel on PATH; module mathematica/14.1 exists but loads "
                                "only after other modules (a module hierarchy)")
    assert mk401["fix"].startswith("on the remote host, module spider mathematica/14.1 names")


@integration
def test_lmod_kernel_found_and_started(sandbox_factory, sandbox_dir: Path,
                                       nothing_left: None) -> None:
    """Debian's real Lmod (init from /etc/profile.d/lmod.sh, MODULEPATH from
    /etc/lmod/modulespath) with a Lua modulefile."""
    kernel = install_standin(sandbox_dir / "opt", "Mathematica/14.1/Executables/WolframKernel")
    mods = _modulefiles(sandbox_dir / "lmods", kernel.parent, lua=True)
    box = _lmod_box(sandbox_factory, sandbox_dir, mods)
    checks = report(box, f"{LOGIN},MK401,MK402", "--kernel-timeout", "10")
    mk401 = checks["MK401"]
    assert mk401["status"] == "pass", mk401
    assert mk401["summary"] == f"{kernel} from module mathematica/14.1 (version 14.1)"
    assert "/etc/profile.d/lmod.sh" in "\n".join(mk401["details"])
    assert checks["MK402"]["status"] == "pass", checks["MK402"]


@integration
def test_setup_writes_a_launch_command_that_loads_the_module(sandbox_factory, sandbox_dir: Path,
                                                            tmp_path: Path, nothing_left: None) -> None:
    """`mkdoctor setup` with a kernel that only a module puts on PATH: the profile keeps
    the module, the written launch command loads it before the kernel, and a later run
    of the profile passes MK404 (that very command) and MK501 (the files agree)."""
    import tomllib

    from tests.helpers import json_report, run_mkdoctor

    box, kernel = _env_modules_box(sandbox_factory, sandbox_dir, True, "bash")
    cfg = tmp_path / "ssh_config"
    cfg.write_bytes(box.client_config.read_bytes())
    cfg.chmod(0o600)
    confdir, home = tmp_path / "conf", tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    done = run_mkdoctor("setup", "--yes", "--offline", "--ssh-config", str(cfg), "--host", box.alias,
                        "--name", "mod", "--mode", "tunnel", "--kernel-timeout", "10",
                        config_dir=confdir, env=env, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "module load mathematica/14.1" in done.stdout, done.stdout
    prof = tomllib.loads(next(confdir.rglob("mod.toml")).read_text())
    assert prof["module"] == "mathematica/14.1" and prof["module_init"] == ENV_MODULES_INIT, prof
    assert prof["kernel"] == str(kernel)
    launch = prof["frontend"]["launch_command"]
    assert f". {ENV_MODULES_INIT} >/dev/null 2>&1; module load mathematica/14.1 && exec" in launch
    # the parallel-kernels file starts each subkernel the same way: its KernelCommand, run
    # by the remote login shell as ssh runs a command, loads the module and starts the kernel
    from mkdoctor import frontend as wl

    par = wl.read_parallel(next(confdir.rglob("mod-parallel-kernels.wl")).read_text())
    assert (par.kernel, par.module) == (str(kernel), "mathematica/14.1"), par
    line = " ".join(shlex.quote(w) for w in kernel_prefix(par.module, par.module_init) + [par.kernel])
    assert f'"KernelCommand" -> {wl.wl_string(line)}' in next(confdir.rglob("mod-parallel-kernels.wl")).read_text()
    ran = box.ssh(line + " -noprompt -run 'Print[$VersionNumber]; Exit[]'")
    assert ran.returncode == 0 and ran.stdout.strip() == "14.1", (ran.stdout, ran.stderr)
    data, _ = json_report("--profile", "mod", "--only", f"{LOGIN},MK404,MK501", "--offline",
                          "--kernel-timeout", "10", config_dir=confdir, env=env)
    got = {c["id"]: c["status"] for c in data["checks"]}
    assert got["MK404"] == "pass" and got["MK501"] == "pass", data
