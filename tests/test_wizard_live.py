"""`mkdoctor setup`'s long steps on a real terminal: a status line names the check that
runs and for how long while the kernel takes its time; piped or under CI, lines only.

Against the sandbox's real sshd with the stand-in kernel (no Mathematica here) told to
take 6 s to start (``slow:6`` in ~/.standin-fault): the proof's MK404 (the one kernel
start of a setup that works) waits that long.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, mkdoctor_env
from tests.test_wizard import install_standin

pytestmark = pytest.mark.integration


@pytest.fixture
def slow(sandbox, tmp_path):
    kernel = install_standin(sandbox.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    (sandbox.home / ".standin-fault").write_text("slow:6\n")
    cfg = tmp_path / "ssh_config"
    shutil.copyfile(sandbox.client_config, cfg)
    home = tmp_path / "home"
    home.mkdir()
    args = ["-m", "mkdoctor", "setup", "--yes", "--ssh-config", str(cfg), "--offline",
            "--host", "sandbox", "--name", "slowk", "--mode", "direct",
            "--link-host", "127.0.0.1", "--kernel", str(kernel), "--kernel-timeout", "30"]
    return args, mkdoctor_env(tmp_path / "conf", HOME=str(home))


def test_setup_shows_what_runs_while_the_kernel_starts(slow) -> None:
    import pexpect

    args, env = slow
    env.pop("CI", None)
    child = pexpect.spawn(sys.executable, args, env=env, cwd=str(ROOT), encoding="utf-8",
                          timeout=120, dimensions=(40, 200))
    child.logfile_read = seen = io.StringIO()
    child.expect(r"pass +MK304 passwordless-login")
    child.expect(r"MK404 kernel-link: running the launch command … (\d) s")
    shown_at = time.monotonic()
    assert int(child.match.group(1)) < 6
    child.expect(r"MK404 kernel-link: running the launch command … [2-9] s")  # the clock runs
    assert "MK404 kernel-link: " not in child.before.replace(
        "MK404 kernel-link: running", "")  # no result yet
    child.expect(r"pass +MK404 kernel-link")
    assert time.monotonic() - shown_at >= 2
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, seen.getvalue()[-3000:]
    out = seen.getvalue()
    # animated with \r and spaces only (NO_COLOR is set by mkdoctor_env): no escape sequence
    assert "\x1b" not in out and re.search(r"\r(?!\n)", out)
    # the status line is gone at the end: the last thing on the screen is the summary
    assert out.rstrip().splitlines()[-1].strip() and "…" not in out.rstrip().splitlines()[-1]


def test_setup_piped_or_under_ci_has_no_status_line(slow) -> None:
    import pexpect

    args, env = slow
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=180,
                          env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\r" not in done.stdout and "\x1b" not in done.stdout
    assert "running the launch command …" not in done.stdout and "pass  MK404" in done.stdout

    env_ci = dict(env, CI="true")
    child = pexpect.spawn(sys.executable, [*args, "--name", "slowci"], env=env_ci,
                          cwd=str(ROOT), encoding="utf-8", timeout=120)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before[-3000:]
    assert re.search(r"\r(?!\n)", child.before) is None
    assert "running the launch command …" not in child.before
