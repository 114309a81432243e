"""Running the real ``mkdoctor`` command in tests.

Tests run the command as a user would: a subprocess (``python -m mkdoctor``), optionally
inside a network namespace, with its own config directory so that no test reads or
writes the real user's profiles, and never with a terminal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
_EMPTY_CONFIG: Optional[Path] = None


def source_copy(dest: Path) -> Path:
    """A copy of the project's source tree under ``dest`` (without .git, the virtualenv
    and build output), for a test that builds or installs the package: a build writes
    build/ and *.egg-info into the tree it builds, so two builds of one tree (or a build
    left over from another test) must never meet."""
    import shutil

    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                  "__pycache__", ".pytest_cache")
    target = dest / "src"
    shutil.copytree(ROOT, target, ignore=skip, symlinks=True)
    return target


def empty_config_dir() -> Path:
    """One empty config directory for the whole test process, removed at exit: runs that
    do not pass their own never see the developer's saved profiles."""
    global _EMPTY_CONFIG
    if _EMPTY_CONFIG is None:
        import atexit
        import shutil
        import tempfile

        _EMPTY_CONFIG = Path(tempfile.mkdtemp(prefix="mkd-cfg-"))
        atexit.register(shutil.rmtree, _EMPTY_CONFIG, True)
    return _EMPTY_CONFIG


def mkdoctor_env(config_dir: Optional[Path] = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if config_dir is not None:
        env["MKDOCTOR_CONFIG_DIR"] = str(config_dir)
    env.update(extra)
    return env


def run_mkdoctor(
    *args: str,
    config_dir: Optional[Path] = None,
    netns: Optional[str] = None,
    env: Optional[dict[str, str]] = None,
    timeout: float = 120,
    input: Optional[str] = None,
) -> subprocess.CompletedProcess:
    """Run ``mkdoctor ARGS`` and return the completed process (text stdout/stderr).

    ``config_dir`` defaults to an empty directory when not given, so a saved profile of
    the developer's never leaks into a test.
    """
    if config_dir is None:
        config_dir = empty_config_dir()
    argv: list[str] = [sys.executable, "-m", "mkdoctor", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    full_env = mkdoctor_env(config_dir)
    if env:
        full_env.update(env)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=full_env,
        stdin=subprocess.DEVNULL if input is None else None, input=input, cwd=str(ROOT),
    )


def json_report(*args: str, **kw: Any) -> tuple[dict, subprocess.CompletedProcess]:
    """Run with ``--format json`` and parse stdout (which must hold the report alone)."""
    done = run_mkdoctor(*args, "--format", "json", **kw)
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout is not JSON ({exc}); exit status {done.returncode}:\n"
                             f"{done.stdout}\nstderr:\n{done.stderr}") from None
    return data, done


def by_id(report: dict) -> dict[str, dict]:
    """The report's checks keyed by ID."""
    return {c["id"]: c for c in report["checks"]}


def status_of(report: dict, check_id: str) -> str:
    return by_id(report)[check_id]["status"]


def free_port_pair() -> tuple[int, int]:
    """Two consecutive ports free on 127.0.0.1 and 0.0.0.0 right now (for --link-ports:
    a test that listens on the default pair would meet the other test workers there)."""
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p < 65000:
            try:
                for port in (p, p + 1):
                    with socket.socket() as t:
                        t.bind(("0.0.0.0", port))
                return p, p + 1
            except OSError:
                continue


def stop_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str,
              sig: int = signal.SIGTERM, within: float = 30) -> tuple[float, str, str]:
    """Send ``sig`` (SIGTERM) to a running mkdoctor once ``ready()`` (within ``within`` s):
    (seconds from the signal to its exit, stdout, stderr). It must end as interrupted: exit
    130, "interrupted", no traceback."""
    end = time.monotonic() + within
    while not ready():
        assert time.monotonic() < end, f"{what} never happened"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(sig)
    stopped = time.monotonic()
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - stopped
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "Traceback" not in err and "interrupted" in err, err
    return took, out, err


def none_left(find: Callable[[], list], within: float = 3.0) -> None:
    """Wait up to ``within`` s until ``find()`` (processes still running) is empty."""
    end = time.monotonic() + within
    while find():
        assert time.monotonic() < end, find()
        time.sleep(0.05)
