"""The kernel path as the launch command's remote login shell reads it (issue 14):
:class:`mkdoctor.kernel.KernelPath`, read by the real ``sh`` locally (hostile input) and
over a real sshd with the stand-in kernel (tests/standin_kernel.py: Mathematica cannot be
installed here), with MK401, MK402 and MK404 run as a user would.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from mkdoctor.kernel import (HOW_HOME, HOW_PATH, HOW_TILDE, KernelPath, classify_typed,
                             discovery_script, lookalike, parse_discovery, wolframscript_answer)
from mkdoctor.launch import LaunchSpec, kernel_argv, kernel_fields, launch_command, split_launch
from tests.test_kernel_checks import (LOGIN, _on_path, install_standin, nothing_left,  # noqa: F401
                                      own_pair, report)

KERNEL = "Wolfram/Mathematica/14.1/Executables/WolframKernel"


# ------------------------------------------------------------------ pure


@pytest.mark.parametrize("typed, how", [
    ("/opt/x/WolframKernel", "absolute"), ("~/math.sh", HOW_TILDE), ("~", HOW_TILDE),
    ("~alice/bin/math", HOW_TILDE), ("./math.sh", HOW_HOME), ("bin/math", HOW_HOME),
    ("math.sh", HOW_PATH), ("-rf", HOW_PATH),
])
def test_classify_typed(typed: str, how: str) -> None:
    assert classify_typed(typed)[0] == how


@pytest.mark.parametrize("typed", ["~$(touch x)/k", "~`id`/k", "~a;b/k", "~a b/k", "~'x'/k", "~-x/k", "x\ty", "/a\x7f", "x\ny",
                                   "/a\nb"])
def test_tilde_user_must_be_a_user_name(typed: str) -> None:
    with pytest.raises(ValueError):
        discovery_script(typed)


def test_lookalikes_by_name() -> None:
    assert "wolframscript" in lookalike("/usr/local/bin/wolframscript")
    assert "front end" in lookalike("/usr/local/bin/wolfram",
                                    "/usr/local/Wolfram/Mathematica/13.3/Executables/Mathematica")
    assert "front end" in lookalike("/usr/bin/mathematica")
    assert lookalike("/usr/local/Wolfram/Wolfram/14.2/Executables/WolframKernel") == ""
    assert wolframscript_answer("WolframScript 1.3.0 for Linux 64-bit RPM x86-64\n")
    assert not wolframscript_answer("Wolfram Language 14.1.0 Engine for Linux x86 (64-bit)")


def test_facts_round_trip() -> None:
    r = KernelPath("math", "/opt/m/Executables/math", "module", "mathematica/14.1",
                   "/usr/share/modules/init/sh", "/opt/m/Executables/WolframKernel")
    assert KernelPath.from_facts(r.facts()) == r
    assert KernelPath.from_facts({"kernel": ""}) is None


# ------------------------------------------------------------------ the real sh, hostile input

HOSTILE = ["a b", "$(touch pwned)", "`touch pwned`", "x;touch pwned", "x'y", 'x"y', "-x",
           "--", "x\\y", "x|touch pwned", "*", "x&&touch pwned", "$HOME"]


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("form", ["{}", "./{}", "~/{}", "{abs}"])
def test_hostile_paths_are_read_literally(tmp_path: Path, name: str, form: str) -> None:
    """Each hostile name, as a file in the home directory, typed in each form: the real sh
    runs the reading script, nothing is executed, and the path read is that file (a bare
    name is looked up in PATH only: not found, with the ./NAME hint)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / name).write_text("#!/bin/sh\n")
    (home / name).chmod(0o755)
    typed = form.format(name, abs=str(home / name)) if form != "{abs}" else str(home / name)
    done = subprocess.run(["sh", "-c", discovery_script(typed)], capture_output=True, text=True,
                          timeout=60, cwd=home, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    found = parse_discovery(done.stdout)
    assert not list(tmp_path.rglob("pwned")), "the shell ran part of the path"
    if form == "{}":
        assert found.reading.state == "notfound", done.stdout
        assert found.reading.home_hint == str(home / name)
    else:
        assert (found.reading.state, found.reading.path) == ("ok", str(home / name)), done.stdout


def test_launch_command_runs_the_resolved_path_with_hostile_characters() -> None:
    """The launch command carries the absolute path the reading found, one word for the
    remote shell, whatever it holds."""
    evil = "/home/u/a b/$(touch x);'\"/WolframKernel"
    spec = LaunchSpec(destination="mk-h", mode="tunnel", link_ports=(4000, 4001),
                      **kernel_fields(KernelPath("~/x", evil, HOW_TILDE)))
    _, remote = split_launch(launch_command(spec))
    assert remote[0] == evil


# ------------------------------------------------------------------ over a real sshd

integration = pytest.mark.integration

WRAPPER = '#!/bin/sh\nexec "$HOME/{kernel}" "$@"\n'


def _wrapper(box, name: str, target: str) -> Path:
    path = box.home / name
    path.write_text(WRAPPER.format(kernel=target))
    path.chmod(0o755)
    return path


@integration
def test_absolute_kernel_starts_beside_mk401_and_its_failure_still_blocks(
        sandbox_factory, nothing_left: None) -> None:
    """An absolute --kernel path whose version the path says: MK402 starts it at once,
    beside MK401's reading on the server, rather than after it (its commands show it
    ran; MK404 does the same, but reads the server's listeners first, by when MK401 has
    its answer over loopback). When MK401 then fails (here: the file is not executable),
    both are reported as blocked (MK402 by MK401, MK404 by MK402, which it overlaps),
    not with their own words, and no kernel is left."""
    box = sandbox_factory()
    path = install_standin(box.home, KERNEL)
    path.chmod(0o644)
    only = f"{LOGIN},MK401,MK402,MK404"
    args = ("--kernel", str(path), "--kernel-timeout", "10", "--mode", "tunnel", "-v", *own_pair())
    checks = report(box, only, *args)
    assert checks["MK401"]["status"] == "fail", checks["MK401"]
    mk402, mk404 = checks["MK402"], checks["MK404"]
    assert mk402["status"] == "skip" and "MK401" in mk402["summary"], mk402
    assert any(str(path) in cmd for cmd in mk402.get("commands", [])), mk402  # it started
    assert mk404["status"] == "skip" and "MK402" in mk404["summary"], mk404
    path.chmod(0o755)  # the same run passes once the file is a kernel
    checks = report(box, only, *args)
    assert [checks[c]["status"] for c in ("MK401", "MK402", "MK404")] == ["pass"] * 3, checks


@integration
def test_bare_wrapper_name_is_not_on_path_and_the_fix_is_dot_slash(sandbox_factory,
                                                                  nothing_left: None) -> None:
    """``--kernel math.sh`` with ~/math.sh: the launch command's shell would not find it
    (a bare name is looked up in PATH), so MK401 fails like MK402 would, and says ./math.sh;
    with ./math.sh both pass, MK402 through the wrapper, and MK404's launch command works."""
    box = sandbox_factory()
    install_standin(box.home, KERNEL)
    wrapper = _wrapper(box, "math.sh", KERNEL)
    checks = report(box, f"{LOGIN},MK401,MK402", "--kernel", "math.sh")
    mk401 = checks["MK401"]
    assert mk401["status"] == "fail", mk401
    assert mk401["summary"].startswith("math.sh: not found on the remote host")
    assert mk401["fix"] == f"it is in the home directory ({wrapper}): use --kernel ./math.sh"
    assert checks["MK402"]["status"] == "skip"

    checks = report(box, f"{LOGIN},MK401,MK402,MK404", "--kernel", "./math.sh",
                    "--kernel-timeout", "10", "--mode", "tunnel")
    assert checks["MK401"]["status"] == "pass", checks["MK401"]
    assert checks["MK401"]["summary"] == f"./math.sh: executable ({wrapper})"
    assert f"reads it as {wrapper} ({HOW_HOME})" in "\n".join(checks["MK401"]["details"])
    assert checks["MK402"]["status"] == "pass", checks["MK402"]
    assert checks["MK404"]["status"] == "pass", checks["MK404"]


@integration
@pytest.mark.parametrize("shell", ["/bin/bash", "/usr/bin/tcsh", "/usr/bin/fish"])
def test_hostile_wrapper_name_end_to_end(shell: str, sandbox_factory, sandbox_dir: Path,
                                         nothing_left: None) -> None:
    """A wrapper whose name holds a space, ;, $(...), both quotes and a leading '-', typed
    as ./NAME, under bash, tcsh and fish login shells: MK401 reads it, MK402 starts it,
    MK404's launch command runs it; nothing of the name is ever executed."""
    box = sandbox_factory(login_shell=shell)
    install_standin(box.home, KERNEL)
    name = "-k b;$(touch pwned)'x\"y"
    _wrapper(box, name, KERNEL)
    # its own link ports: the server is this machine, where other test workers' tunnels
    # listen on the default pair (MK404 would rightly call that port taken)
    checks = report(box, f"{LOGIN},MK401,MK402,MK404", "--kernel", f"./{name}",
                    "--kernel-timeout", "10", "--mode", "tunnel", *own_pair())
    assert checks["MK401"]["status"] == "pass", checks["MK401"]
    assert checks["MK402"]["status"] == "pass", checks["MK402"]
    assert checks["MK404"]["status"] == "pass", checks["MK404"]
    assert not list(sandbox_dir.rglob("pwned"))


@integration
def test_wrapper_that_drops_its_arguments(sandbox_factory, nothing_left: None) -> None:
    """A wrapper without "$@": the kernel starts without -run and evaluates nothing; the fix
    says a wrapper must pass its arguments on (the control: the same wrapper with "$@"
    passes in the test above)."""
    box = sandbox_factory()
    install_standin(box.home, KERNEL)
    bad = box.home / "math.sh"
    bad.write_text(f'#!/bin/sh\nexec "$HOME/{KERNEL}" -noprompt\n')
    bad.chmod(0o755)
    mk402 = report(box, f"{LOGIN},MK401,MK402", "--kernel", "./math.sh", "--kernel-timeout", "5")["MK402"]
    assert mk402["status"] == "fail", mk402
    assert mk402["summary"] == "the kernel started but did not evaluate the test expression"
    assert 'must pass its arguments on (exec /path/to/WolframKernel "$@")' in mk402["fix"]


@integration
@pytest.mark.parametrize("form", ["~/math.sh", "~{user}/math.sh"])
def test_tilde_paths_are_expanded_like_the_remote_shell(form: str, sandbox_factory,
                                                        nothing_left: None) -> None:
    box = sandbox_factory()
    install_standin(box.home, KERNEL)
    wrapper = _wrapper(box, "math.sh", KERNEL)
    checks = report(box, f"{LOGIN},MK401,MK402", "--kernel", form.format(user=box.user),
                    "--kernel-timeout", "10")
    assert checks["MK401"]["status"] == "pass", checks["MK401"]
    assert checks["MK401"]["summary"].endswith(f": executable ({wrapper})")
    assert checks["MK402"]["status"] == "pass", checks["MK402"]


@integration
def test_bare_name_on_the_login_shell_path_passes(sandbox_factory, nothing_left: None) -> None:
    """A bare name that the non-interactive login shell's PATH has (~/.bashrc puts ~/bin
    there): found, and the launch command gets its absolute path."""
    box = sandbox_factory()
    kernel = install_standin(box.home, KERNEL)
    _on_path(box, "mk-math", str(kernel))
    checks = report(box, f"{LOGIN},MK401,MK402", "--kernel", "mk-math", "--kernel-timeout", "10")
    assert checks["MK401"]["status"] == "pass", checks["MK401"]
    assert checks["MK401"]["summary"] == f"mk-math: executable ({box.home / 'bin' / 'mk-math'}), version 14.1"
    assert f"({HOW_PATH})" in "\n".join(checks["MK401"]["details"])
    assert checks["MK402"]["status"] == "pass", checks["MK402"]


@integration
def test_wolframscript_is_refused_with_the_kernel_beside_it(sandbox_factory,
                                                            nothing_left: None) -> None:
    """--kernel .../Executables/wolframscript (the stand-in playing wolframscript): MK401
    fails naming the WolframKernel beside it; a wrapper that hides it passes MK401, and MK402
    recognises wolframscript by its answer to -version."""
    box = sandbox_factory()
    kernel = install_standin(box.home, KERNEL)
    script = install_standin(box.home, KERNEL.replace("WolframKernel", "wolframscript"))
    mk401 = report(box, f"{LOGIN},MK401", "--kernel", str(script))["MK401"]
    assert mk401["status"] == "fail", mk401
    assert "wolframscript" in mk401["summary"] and "not a WSTP kernel" in mk401["summary"]
    assert mk401["fix"] == f"use the kernel beside it: --kernel {kernel}"

    _wrapper(box, "ws.sh", KERNEL.replace("WolframKernel", "wolframscript"))
    checks = report(box, f"{LOGIN},MK401,MK402", "--kernel", "./ws.sh", "--kernel-timeout", "4")
    assert checks["MK401"]["status"] == "pass", checks["MK401"]
    mk402 = checks["MK402"]
    assert mk402["status"] == "fail", mk402
    assert "is wolframscript" in mk402["summary"], mk402
    assert "WolframKernel" in mk402["fix"]


@integration
def test_wolfram_on_path_that_is_the_front_end_is_left_out(sandbox_factory,
                                                           nothing_left: None) -> None:
    box = sandbox_factory()
    front = install_standin(box.home, KERNEL.replace("WolframKernel", "Mathematica"))
    _on_path(box, "wolfram", str(front))
    mk401 = report(box, f"{LOGIN},MK401")["MK401"]
    assert mk401["status"] == "fail", mk401
    assert any("not a kernel, left out" in d and "front end" in d for d in mk401["details"])
    # the control: a real kernel on PATH under the same name is taken
    (box.home / "bin" / "wolfram").unlink()
    kernel = install_standin(box.home, KERNEL)
    (box.home / "bin" / "wolfram").symlink_to(kernel)
    assert report(box, f"{LOGIN},MK401")["MK401"]["status"] == "pass"


def test_kernel_argv_without_module_is_unchanged() -> None:
    spec = LaunchSpec(destination="mk-h", kernel="/k", mode="tunnel", link_ports=(1, 2))
    assert kernel_argv(spec)[0] == "/k"
    assert shlex.split(launch_command(spec))[-1].startswith("/k -wstp")
