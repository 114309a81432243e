"""scripts/install.sh, run for real: a virtualenv and pip install into a throwaway $HOME.

On a fresh machine the first run's checks find problems (no SSH key yet: MK202 fails, so
mkdoctor exits 1); the installation itself worked, so the script says so and exits 0. A
usage error (2) passes through. When ~/.local/bin is not on PATH it says how to add it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import source_copy

USER_PATH = "/usr/local/bin:/usr/bin:/bin"
SUCCEEDED = "mkdoctor: installation succeeded; the checks found problems"


@pytest.fixture(scope="module")
def fresh_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A $HOME with no ~/.ssh and no ~/.local/bin, like a new account."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's checkout: a copy of this tree, which install.sh builds in."""
    return source_copy(tmp_path_factory.mktemp("checkout"))


def install(home: Path, checkout: Path, *args: str, path: str = USER_PATH) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), PATH=path, NO_COLOR="1", SSH_AUTH_SOCK="",
               MKDOCTOR_VENV=str(home / ".local/share/mkdoctor/venv"),
               MKDOCTOR_CONFIG_DIR=str(home / ".config/mkdoctor"))
    return subprocess.run(["bash", str(checkout / "scripts/install.sh"), *args], capture_output=True,
                          text=True, env=env, cwd=str(home), timeout=900, stdin=subprocess.DEVNULL)


def test_failing_checks_do_not_fail_the_installation(fresh_home, checkout):
    done = install(fresh_home, checkout, "--offline", "--only", "MK202")
    out = done.stdout + done.stderr
    assert (fresh_home / ".local/bin/mkdoctor").exists(), out
    assert "✗ MK202 key-pair" in done.stdout and "no SSH key" in done.stdout, out  # the report ran
    assert done.returncode == 0, out
    assert [ln for ln in done.stderr.splitlines() if ln.startswith(SUCCEEDED)] == [
        f"{SUCCEEDED}: the report above lists what to fix"], done.stderr
    hint = f"mkdoctor: {fresh_home}/.local/bin is not on your PATH: run  export PATH="
    assert any(ln.startswith(hint) for ln in done.stderr.splitlines()), done.stderr


def test_usage_errors_pass_through_and_no_path_hint_when_on_path(fresh_home, checkout):
    done = install(fresh_home, checkout, "--no-such-flag", path=f"{fresh_home}/.local/bin:{USER_PATH}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert SUCCEEDED not in done.stderr
    assert "not on your PATH" not in done.stderr
    assert "Traceback" not in done.stderr
