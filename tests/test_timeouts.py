"""No step may hang: real processes and sockets that never answer.

Each test here reproduces a way a step could block past its timeout (a program whose
descendant keeps the output pipe open, an ssh-agent that accepts but never replies) and
checks that the step ends within its timeout and leaves nothing running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mkdoctor.proc import ProcessRunner
from tests.harness.procs import is_alive
from tests.helpers import by_id, json_report, none_left, stop_when


def _pids_of(marker: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd and is_alive(int(name)):
            out.append(int(name))
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="setsid(1) and /proc")
def test_timeout_returns_even_when_a_descendant_in_another_session_holds_the_pipe():
    # The program starts a child in its own session (setsid): killing the program's
    # process group does not reach it, and it keeps stdout/stderr open. The step must
    # still end at its timeout, and the escaped descendant must not be left running.
    marker = "3131.5"  # a sleep length no other process uses
    runner = ProcessRunner()
    box: dict = {}
    started = time.monotonic()
    t = threading.Thread(target=lambda: box.update(done=runner.run(
        ["sh", "-c", f"setsid sleep {marker} & echo started; sleep {marker}"], timeout=1.0)),
        daemon=True)
    t.start()
    t.join(10)  # a hung run() is a failure here, not a hung test session
    took = time.monotonic() - started
    try:
        assert "done" in box, f"run() with a 1 s timeout still running after {took:.1f} s"
        done = box["done"]
        assert done.timed_out and done.returncode is None
        assert "started" in done.stdout
        assert took < 5, f"run() took {took:.1f} s with a 1 s timeout"
        deadline = time.monotonic() + 3
        while _pids_of(f"sleep {marker}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _pids_of(f"sleep {marker}"), "a descendant of the timed-out program survived"
    finally:
        for pid in _pids_of(f"sleep {marker}"):
            os.kill(pid, 9)


@pytest.fixture
def silent_agent(tmp_path: Path):
    """A unix socket that accepts connections and never answers (a wedged ssh-agent)."""
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield path, held
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    server.close()


def test_mk202_with_an_agent_that_never_answers_ends_at_the_timeout(tmp_path, silent_agent):
    sock, held = silent_agent
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)],
                   check=True, timeout=30)
    started = time.monotonic()
    data, done = json_report("--only", "MK202", "--timeout", "2", "--deadline", "30",
                             env={"HOME": str(home), "SSH_AUTH_SOCK": str(sock)}, timeout=60)
    took = time.monotonic() - started
    assert held, "ssh-add never connected to the agent socket"
    assert took < 15, f"MK202 took {took:.1f} s"
    result = by_id(data)["MK202"]
    assert result["status"] == "fail"
    text = " ".join([result["summary"], result.get("fix") or "", *(result.get("details") or [])])
    # Says what happened (the agent did not answer), not "exited with None".
    assert "exited with None" not in text
    assert "did not answer" in text, text
    assert not _pids_of("ssh-add -L")


@pytest.mark.skipif(sys.platform != "linux", reason="setsid(1) and /proc")
def test_timeout_returns_even_when_a_double_forked_daemon_holds_the_pipe():
    # A daemon that left the process tree too (double fork): it cannot be found to be
    # killed, but run() must still end soon after the timeout, with the output so far.
    marker = "3132.5"
    runner = ProcessRunner()
    box: dict = {}
    started = time.monotonic()
    t = threading.Thread(target=lambda: box.update(done=runner.run(
        ["sh", "-c", f"(setsid sleep {marker} &); echo started; sleep {marker}"], timeout=1.0)),
        daemon=True)
    t.start()
    t.join(10)
    took = time.monotonic() - started
    try:
        assert "done" in box, f"run() with a 1 s timeout still running after {took:.1f} s"
        done = box["done"]
        assert done.timed_out and done.returncode is None
        assert "started" in done.stdout
        assert took < 6, f"run() took {took:.1f} s with a 1 s timeout"
    finally:
        for pid in _pids_of(f"sleep {marker}"):
            os.kill(pid, 9)


STUCK_RUN = r'''
import json, socket, sys, time
from pathlib import Path
from mkdoctor.checks import mk304_passwordless_login as mk304
from mkdoctor.model import Check, passed
from mkdoctor.options import Options, Target
from mkdoctor.runner import run_one

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)

def stuck(ctx):
    # An uninterruptible blocking call with no timeout (what a check must never do):
    # a connection to a server that never answers.
    s = socket.create_connection(listener.getsockname())
    s.settimeout(None)
    s.recv(1)
    return passed("never")

checks = [mk304.CHECK, Check(id="MK999", name="stuck", group="g", title="t", run=stuck,
                             needs=("MK304",))]
opts = Options(ssh_config=Path(sys.argv[1]), offline=True, timeout=3, deadline=float(sys.argv[3]))
rep = run_one(opts, Target(sys.argv[2]), checks)
print(json.dumps({c.id: [r.status.value, r.summary] for c, r in rep.results}), flush=True)
'''


@pytest.mark.integration
def test_a_check_stuck_in_a_blocking_call_ends_at_the_deadline_and_the_master_is_closed(
        sandbox, tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_RUN)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script), str(sandbox.client_config),
                           sandbox.alias, "6"], capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 20, f"the process took {took:.1f} s to exit with a 6 s deadline"
    import json
    res = json.loads(done.stdout.strip().splitlines()[-1])
    assert res["MK304"][0] == "pass", res
    assert res["MK999"][0] == "fail" and "timed out after" in res["MK999"][1], res
    # The run's ControlMaster (ssh -F THIS-SANDBOX'S-CONFIG -M ... ) is gone. By the config
    # file, not the alias: every sandbox's alias is "sandbox", and other test workers'
    # masters run meanwhile.
    assert not [p for p in _pids_of("ControlMaster=yes") if f"-F {sandbox.client_config} " in
                Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()]


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGHUP-ignored"])
def test_stopped_while_the_login_begun_at_start_still_runs(tmp_path, sig: str):
    """A run of one host begins its login at start, before the checks are loaded
    (Context.begin_login). SIGTERM while that login still waits on a server that accepts
    and never answers: mkdoctor ends at once (not when the login's timeout of
    2 x --timeout + 2 s runs out) and leaves no ssh of its own running. SIGHUP (the
    terminal closed) does the same, unless the caller ignores it (nohup): then the run
    goes on."""
    tarpit = socket.socket()
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        tarpit.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(tarpit.accept()[0])  # never a banner
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host tarpit\n    HostName 127.0.0.1\n    Port {tarpit.getsockname()[1]}\n"
                   f"    UserKnownHostsFile {tmp_path / 'known_hosts'}\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent),
               MKDOCTOR_CONFIG_DIR=str(tmp_path / "cfg"), NO_COLOR="1")
    hup = signal.SIG_IGN if sig == "SIGHUP-ignored" else signal.SIG_DFL  # whatever pytest's is
    proc = subprocess.Popen([sys.executable, "-m", "mkdoctor", "--ssh-config", str(cfg),
                             "--host", "tarpit", "--offline", "--timeout", "10",
                             "--format", "json"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(tmp_path), preexec_fn=lambda: signal.signal(signal.SIGHUP, hup))
    mine = f"-F {cfg} "

    def login_started() -> bool:
        return bool([p for p in _pids_of("ControlMaster=yes") if mine in _cmdline(p)])

    try:
        if sig == "SIGHUP-ignored":
            end = time.monotonic() + 15
            while not login_started():
                assert time.monotonic() < end and proc.poll() is None, "the login never started"
                time.sleep(0.02)
            proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            assert proc.poll() is None, proc.communicate()  # nohup: the run goes on
        took, _, _ = stop_when(proc, login_started, "the login's start",
                               sig=signal.SIGTERM if sig != "SIGHUP" else signal.SIGHUP,
                               within=15)
        assert took < 4, f"{took:.1f} s from SIGTERM to exit with a 22 s login timeout"
        none_left(lambda: [_cmdline(p) for p in _pids_of(mine) if "ssh" in _cmdline(p)])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        stop.set()
        for s in held:
            s.close()
        tarpit.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
