"""Running local programs: every call has a timeout, is recorded, and can be killed.

All subprocesses of a run go through :class:`ProcessRunner`: it records the command line
for ``-v`` (into the current check's result), enforces the step timeout, starts each
program in its own process group so that a timeout kills the whole group, and kills
whatever still runs when the run's deadline passes.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

_current = threading.local()


def _interrupt(signum, frame):  # noqa: ANN001 - signal handler signature
    raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    """SIGTERM, and SIGHUP (the terminal was closed), end the run like Ctrl-C does
    (KeyboardInterrupt), so that every cleanup runs on the way out: the SSH master is
    closed, remote kernels are ended. A signal the caller ignores stays ignored (``nohup``
    sets SIGHUP to be ignored: the run then goes on when the terminal closes)."""
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:  # Windows has no SIGHUP
            continue
        try:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _interrupt)
        except ValueError:  # not the main thread
            pass


def set_current_log(log: Optional[list[str]]) -> None:
    """Commands run on this thread from now on are appended to ``log`` (a check's result)."""
    _current.log = log


def current_log() -> Optional[list[str]]:
    """The log commands of this thread go to (hand it to :func:`set_current_log` in a
    thread that works for the same check)."""
    return getattr(_current, "log", None)


def record(text: str) -> None:
    log = getattr(_current, "log", None)
    if log is not None:
        log.append(text)


@dataclass
class Completed:
    argv: list[str]
    returncode: Optional[int]  # None when it timed out or was killed
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class ProcessRunner:
    def __init__(self) -> None:
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False

    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        input: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
        stdout_path: Optional[str] = None,
        stdin: Optional[int] = None,
        shown: Optional[str] = None,
    ) -> Completed:
        """Run ``argv`` (never through a shell) for at most ``timeout`` seconds.

        A program that is not installed gives returncode 127 and the error in stderr
        rather than an exception, like a shell would. ``stdin`` (a file descriptor,
        used when ``input`` is None) lets the caller hold the program's standard input
        open, e.g. the read end of a pipe whose closing tells a remote watchdog that we
        are gone.
        """
        argv = [str(a) for a in argv]
        record(shown or shlex.join(argv))  # ``shown``: a readable form of the same command
        if self._closed:
            return Completed(argv, None, "", "run deadline passed", timed_out=True)
        out_file = open(stdout_path, "wb") if stdout_path else None
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input is not None else (
                    stdin if stdin is not None else subprocess.DEVNULL),
                stdout=out_file or subprocess.PIPE,
                stderr=subprocess.STDOUT if out_file else subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            if out_file:
                out_file.close()
            return Completed(argv, 127, "", f"{argv[0]}: not found ({exc.strerror})")
        except OSError as exc:
            if out_file:
                out_file.close()
            return Completed(argv, 126, "", f"{argv[0]}: {exc.strerror}")
        if not self._register(proc):
            _kill_group(proc)  # started as the run was being ended: ended too
        try:
            out, err = proc.communicate(
                input.encode() if input is not None else None, timeout=max(timeout, 0.01)
            )
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = _drain(proc)
            timed_out = True
        finally:
            with self._lock:
                self._live.discard(proc)
            if out_file:
                out_file.close()
        killed = proc.returncode is not None and proc.returncode < 0 and self._closed
        return Completed(
            argv,
            None if (timed_out or killed) else proc.returncode,
            (out or b"").decode("utf-8", "replace"),
            (err or b"").decode("utf-8", "replace"),
            timed_out=timed_out or killed,
        )

    def spawn(self, argv: Sequence[str], stdout_path: str, env: Optional[dict[str, str]] = None
              ) -> Optional[subprocess.Popen]:
        """Start ``argv`` in the background (own process group, stdin /dev/null, stdout
        and stderr to ``stdout_path``), recorded and killed at the deadline like
        :meth:`run`. End it with :meth:`stop`. None when it cannot start (the reason is
        written to ``stdout_path``) or the deadline has passed."""
        argv = [str(a) for a in argv]
        record(shlex.join(argv))
        if self._closed:
            return None
        with open(stdout_path, "wb") as out:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
            except OSError as exc:
                out.write(f"{argv[0]}: {exc.strerror}\n".encode())
                return None
        if not self._register(proc):
            _kill_group(proc)  # started as the run was being ended: ended too
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 0.0) -> Optional[int]:
        """Wait up to ``grace`` seconds for a :meth:`spawn`-ed program to exit, then kill
        its whole process group. Returns its exit status (negative: killed by a signal)."""
        if grace > 0:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(proc)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL already sent
            pass
        with self._lock:
            self._live.discard(proc)
        return proc.returncode

    def _register(self, proc: subprocess.Popen) -> bool:
        """Count ``proc`` among the live programs; False when :meth:`kill_all` came first
        (between the program's start and this call): the caller ends it."""
        with self._lock:
            self._live.add(proc)
            return not self._closed

    def kill_all(self) -> None:
        """The deadline passed: end every program still running, and refuse new ones."""
        with self._lock:
            self._closed = True
            live = list(self._live)
        for proc in live:
            _kill_group(proc)


def _descendants(pid: int) -> list:
    """The living descendants of ``pid`` (psutil processes), [] when they cannot be read."""
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - no psutil, or the process is gone
        return []


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the program, its process group, and its descendants that left the group
    (``setsid``): those would otherwise keep running, and keep our pipes open."""
    escaped = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    for child in escaped:
        try:
            child.kill()  # psutil checks the PID was not reused
        except Exception:  # noqa: BLE001 - already gone, or not ours to kill
            pass


def _drain(proc: subprocess.Popen, grace: float = 2.0) -> tuple[bytes, bytes]:
    """After a kill: the output so far, waiting at most ``grace`` seconds for the pipes
    to close. A process we could not kill (a double-forked daemon) may still hold them:
    then they are closed on our side, and the killed program itself is reaped."""
    try:
        return proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired as exc:
        out, err = exc.stdout or b"", exc.stderr or b""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL already sent
        pass
    return out, err
