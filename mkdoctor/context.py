"""The run context handed to every check.

It carries the options, the target, the run's SSH connection, the deadline, the
results of checks that already finished (their ``facts``), and a once-only cache for
work several checks share (such as reading the remote sshd configuration).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, TypeVar

from mkdoctor.options import Options, Target
from mkdoctor.proc import ProcessRunner
from mkdoctor.model import Result

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """The whole run's ``--deadline`` has passed."""


class Context:
    def __init__(self, options: Options, target: Optional[Target] = None,
                 session: Any = None) -> None:
        """``session``: an open :class:`~mkdoctor.openssh.session.SSHClient` to use
        instead of a new one (setup keeps one for all its steps); it is not closed by
        :meth:`close`: its owner closes it."""
        self.options = options
        self.target = target
        self.runner = ProcessRunner()
        self.started = time.monotonic()
        self.deadline_at = self.started + options.deadline
        self.results: dict[str, Result] = {}
        # run input -> [(check ID, fact)] of the checks that decide it (set by the engine
        # from each check's ``decides``)
        self.deciders: dict[str, list[tuple[str, str]]] = {}
        self._cache: dict[str, Any] = {}
        self._cache_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._ssh = session
        self._own_ssh = session is None
        if session is not None:
            session.runner = self.runner  # this run's deadline kills its programs too

    # --- time -------------------------------------------------------------------------

    def remaining(self) -> float:
        return max(0.0, self.deadline_at - time.monotonic())

    def step_timeout(self, seconds: Optional[float] = None) -> float:
        """The timeout for one network step: ``--timeout`` (or ``seconds``), cut to what
        is left of the run's deadline. Raises :class:`DeadlineExceeded` when none is."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded()
        return min(self.options.timeout if seconds is None else seconds, left)

    # --- facts of earlier checks --------------------------------------------------------

    def result(self, check_id: str) -> Optional[Result]:
        return self.results.get(check_id)

    def fact(self, check_id: str, key: str, default: Any = None) -> Any:
        result = self.results.get(check_id)
        if result is None:
            return default
        return result.facts.get(key, default)

    def input(self, name: str, default: Any = None) -> Any:
        """A run input decided by a check (see ``Check.decides``): the first deciding
        check's published value, else ``default``. A check that reads it declares so
        (``Check.reads``), and the engine runs it after the deciders."""
        for check_id, key in self.deciders.get(name, ()):
            value = self.fact(check_id, key)
            if value not in (None, ""):
                return value
        return default

    @property
    def mode(self) -> str:
        """The connection mode: ``--mode`` (or the profile's), else what the check that
        decides the mode published, else ``tunnel`` (it needs nothing inbound on the
        laptop). Checks that read it declare ``reads=("mode",)``."""
        if self.options.mode:
            return self.options.mode
        return self.input("mode") or "tunnel"

    @property
    def link_ports(self) -> tuple[int, int]:
        return self.options.link_ports

    # --- shared work ---------------------------------------------------------------------

    def cached(self, key: str, compute: Callable[[], T]) -> T:
        """Compute ``key`` once per run, even when several checks ask at the same time.
        An exception is cached too and raised to every caller."""
        with self._lock:
            lock = self._cache_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                try:
                    self._cache[key] = (True, compute())
                except Exception as exc:  # noqa: BLE001 - re-raised to every caller
                    self._cache[key] = (False, exc)
            ok, value = self._cache[key]
        if not ok:
            raise value
        return value

    # --- local programs and the remote host ----------------------------------------------

    def run_local(self, argv: list[str], timeout: Optional[float] = None, **kw: Any):
        """Run a local program under the step timeout (see :class:`ProcessRunner`)."""
        return self.runner.run(argv, self.step_timeout(timeout), **kw)

    @property
    def ssh(self):
        """The run's :class:`~mkdoctor.openssh.session.SSHClient` (None without a target)."""
        if self.target is None:
            return None
        with self._lock:
            if self._ssh is None:
                from mkdoctor.openssh.session import SSHClient

                self._ssh = SSHClient(
                    self.target.host,
                    self.runner,
                    user=self.target.user,
                    port=self.target.port,
                    ssh_config=self.options.ssh_config,
                    identity=self.options.identity,
                    connect_timeout=self.options.timeout,
                )
                self._own_ssh = True
            return self._ssh

    def close(self) -> None:
        with self._lock:
            ssh, self._ssh = self._ssh, None
        if ssh is not None and self._own_ssh:
            ssh.close()
