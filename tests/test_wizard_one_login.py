"""One login per run, enforced (not hoped): a master connection that dies is a clear
failure of the checks that needed it, never a silent second authentication.

Against a real sshd (LogLevel VERBOSE: one "Accepted publickey" line per
authentication) and the stand-in kernel (tests/standin_kernel.py; Mathematica cannot be
installed here).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from mkdoctor.context import Context
from mkdoctor.engine import run_checks
from mkdoctor.openssh.session import SSHClient
from mkdoctor.options import Options, Target
from mkdoctor.proc import ProcessRunner
from mkdoctor.registry import get
from tests.harness.procs import is_alive
from tests.harness.sshd import SSHSandbox

pytestmark = pytest.mark.integration


def master_pid(c: SSHClient) -> int:
    check = c.control("check")
    assert check.returncode == 0, check.stderr
    return int(check.stderr.split("pid=")[1].split(")")[0])


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)  # no -O exit: the socket file may stay behind (stale)
    for _ in range(50):
        if not is_alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"master {pid} still alive")


def test_a_dead_master_is_a_failure_not_a_second_login(sandbox: SSHSandbox):
    c = SSHClient(sandbox.alias, ProcessRunner(), ssh_config=sandbox.client_config)
    try:
        assert c.login(20).ok
        assert c.run(["true"], timeout=20).ok
        kill(master_pid(c))
        after = c.run(["echo", "again"], timeout=20)
        assert after.exit_code is None
        assert "ControlMaster" in after.stderr and "does not log in a second time" in after.stderr
        again = c.login(20)
        assert not again.ok and again.lost
        assert "does not log in a second time" in again.stderr
        assert c.run(["true"], timeout=20).exit_code is None  # and stays failed
    finally:
        c.close()
    time.sleep(0.3)
    assert sandbox.accepted_count() == 1, sandbox.log_text()


def test_without_the_socket_plain_multiplexing_would_log_in_again(sandbox: SSHSandbox):
    """The fault the options above defend against is real: the same command line without
    ProxyCommand=false logs in a second time when the master is gone. (If this ever fails,
    ssh stopped falling back, and the defence is merely redundant.)"""
    import subprocess

    c = SSHClient(sandbox.alias, ProcessRunner(), ssh_config=sandbox.client_config)
    try:
        assert c.login(20).ok
        kill(master_pid(c))
        full = c.mux_args()
        i = full.index("ProxyCommand=false")
        argv = full[:i - 1] + full[i + 1:]  # without its "-o" either
        assert "ProxyCommand=false" not in argv
        done = subprocess.run(argv + ["-T", "--", sandbox.alias, "true"], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
    finally:
        c.close()
    time.sleep(0.3)
    assert sandbox.accepted_count() == 2


def test_checks_after_the_master_died_fail_with_the_cause(sandbox: SSHSandbox, tmp_path):
    """Mid-run: MK304 logs in, the master is killed, then MK401/MK305 run in the same
    run (context) and fail naming the lost connection; sshd saw one authentication."""
    from tests.test_wizard import install_standin

    kernel = install_standin(sandbox.home, "Wolfram Mathematica/14.1/Executables/WolframKernel")
    opts = Options(ssh_config=sandbox.client_config, kernel=str(kernel), offline=True,
                   timeout=10, deadline=60, mode="tunnel")
    ctx = Context(opts, Target(sandbox.alias))
    try:
        first = dict((c.id, r) for c, r in run_checks(ctx, [get("MK304")]))
        assert first["MK304"].status.value == "pass"
        kill(master_pid(ctx.ssh))
        later = dict((c.id, r) for c, r in run_checks(ctx, [get("MK401"), get("MK402")]))
        r401 = later["MK401"]
        assert r401.status.value == "fail", r401
        assert "does not log in a second time" in r401.summary
        assert later["MK402"].status.value in ("fail", "skip")
    finally:
        ctx.close()
    time.sleep(0.3)
    assert sandbox.accepted_count() == 1, sandbox.log_text()


def _setup(sandbox: SSHSandbox, tmp_path, *extra: str):
    import shutil

    from tests.helpers import run_mkdoctor
    from tests.test_wizard import install_standin

    kernel = install_standin(sandbox.home, "Wolfram/Mathematica/14.1/Executables/WolframKernel")
    cfg = tmp_path / "ssh_config"
    shutil.copyfile(sandbox.client_config, cfg)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return run_mkdoctor("setup", "--yes", "--ssh-config", str(cfg), "--offline", "--host",
                        "sandbox", "--name", "once", "--mode", "direct", "--link-host", "127.0.0.1",
                        "--kernel", str(kernel),
                        *extra, config_dir=tmp_path / "conf", env={"HOME": str(home)},
                        timeout=180)


def test_setup_logs_in_once_with_a_working_key(sandbox: SSHSandbox, tmp_path):
    """The whole setup (host key, login, kernel, ports, proof, the files as written,
    the sshd advice) is one authentication: one session for every step."""
    done = _setup(sandbox, tmp_path, "--identity", str(sandbox.client_key))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked as written: MK501, MK304 passed; MK404 proven in step 9 (the same ssh -G)" in done.stdout, done.stdout
    time.sleep(0.3)
    assert sandbox.accepted_count() == 1, sandbox.log_text()


def test_setup_with_a_new_key_logs_in_twice(sandbox: SSHSandbox, tmp_path):
    """--new-key --install-key: one login installs the key (with the login that works),
    one with the new key for every step after it."""
    done = _setup(sandbox, tmp_path, "--new-key", "--install-key")
    assert done.returncode == 0, done.stdout + done.stderr
    time.sleep(0.3)
    assert sandbox.accepted_count() == 2, sandbox.log_text()
