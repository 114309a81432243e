"""The run context handed to every check.

It carries the options, the target, the run's SSH connection, the deadline, the
results of checks that already finished (their ``facts``), and a once-only cache for
work several checks share (such as reading the remote sshd configuration).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from mkdoctor.options import Options, Target

if TYPE_CHECKING:  # pragma: no cover
    from mkdoctor.fleet import Fleet
from mkdoctor.proc import ProcessRunner
from mkdoctor.model import Result

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """The whole run's ``--deadline`` has passed."""


class Context:
    def __init__(self, options: Options, target: Optional[Target] = None,
                 fleet: Optional["Fleet"] = None, session: Any = None) -> None:
        """``session``: an open :class:`~mkdoctor.openssh.session.SSHClient` to use
        instead of a new one (setup keeps one for all its steps); it is not closed by
        :meth:`close`: its owner closes it."""
        from mkdoctor.fleet import Fleet

        self.options = options
        self.target = target
        # What this host shares with the other hosts of the run (link ports, first hops).
        self.fleet = fleet or Fleet(tuple(options.link_ports))
        self.runner = ProcessRunner()
        self.started = time.monotonic()
        self.deadline_at = self.started + options.deadline
        self.interrupted = False  # end_now: the run was stopped (Ctrl-C, SIGTERM)
        self._time_lock = threading.Lock()
        self.results: dict[str, Result] = {}
        # notified by the engine whenever a result is recorded (wait_result waits on it)
        self.changed = threading.Condition(threading.RLock())
        self.selected: set[str] = set()  # the IDs this run checks (set by the engine)
        # run input -> [(check ID, fact)] of the checks that decide it (set by the engine
        # from each check's ``decides``)
        self.deciders: dict[str, list[tuple[str, str]]] = {}
        self._cache: dict[str, Any] = {}
        self._cache_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        # cleanups to run if the deadline passes while their check is at work
        self._at_deadline: dict[int, Callable[[], Any]] = {}
        self._at_deadline_next = 0
        self._ssh = session
        self._own_ssh = session is None
        if session is not None:
            session.runner = self.runner  # this run's deadline kills its programs too
        self._early_login: Optional[threading.Thread] = None
        self.fleet.enlist(self)

    # --- time -------------------------------------------------------------------------

    def end_now(self) -> None:
        """The run was interrupted (Ctrl-C, SIGTERM): its deadline is now. The engine
        wakes and ends the run as at its deadline (the cleanups checks registered run,
        then every program is killed); no check starts any more."""
        with self._time_lock:
            self.interrupted = True
            self.deadline_at = time.monotonic()
        # Wake the engine. It reads the deadline before every wait of at most 0.5 s, so
        # this is only for speed: never wait long for a lock an ending run holds.
        if self.changed.acquire(timeout=0.2):
            try:
                self.changed.notify_all()
            finally:
                self.changed.release()

    def credit(self, seconds: float) -> None:
        """``seconds`` spent waiting for what the hosts of the run share do not count
        against this host's deadline (not once the run is interrupted)."""
        with self._time_lock:
            if not self.interrupted:
                self.deadline_at += seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline_at - time.monotonic())

    def step_timeout(self, seconds: Optional[float] = None) -> float:
        """The timeout for one network step: ``--timeout`` (or ``seconds``), cut to what
        is left of the run's deadline. Raises :class:`DeadlineExceeded` when none is."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded()
        return min(self.options.timeout if seconds is None else seconds, left)

    def at_deadline(self, cleanup: Callable[[], Any]) -> Callable[[], None]:
        """Register ``cleanup``: the engine calls it if the run's deadline passes while
        the caller is still at work, before every program of the run is killed (the SSH
        connection is still up then), e.g. to end a kernel a check started on the remote
        host. It must bound its own time (no :meth:`step_timeout`: no time is left). The
        returned function unregisters it; call it when the work is done."""
        with self._lock:
            key = self._at_deadline_next
            self._at_deadline_next += 1
            self._at_deadline[key] = cleanup

        def remove() -> None:
            with self._lock:
                self._at_deadline.pop(key, None)

        return remove

    def run_deadline_cleanups(self, budget: float) -> None:
        """The deadline passed: run the registered cleanups at the same time, waiting
        at most ``budget`` seconds for them all; one that fails does not stop the others."""
        with self._lock:
            cleanups = list(self._at_deadline.values())
            self._at_deadline.clear()

        def call(fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort: the run is ending
                pass

        threads = [threading.Thread(target=call, args=(fn,), daemon=True) for fn in cleanups]
        for t in threads:
            t.start()
        end = time.monotonic() + budget
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))

    # --- facts of earlier checks --------------------------------------------------------

    def result(self, check_id: str) -> Optional[Result]:
        return self.results.get(check_id)

    def wait_result(self, check_id: str) -> Optional[Result]:
        """The result of ``check_id``, waiting for it when it is in this run and not done
        yet (for words only a failure needs: a check that does not declare ``after``
        for it). None when it is not in this run, or at the deadline."""
        with self.changed:  # woken when a result is recorded; polled too, for a
            # caller that records results itself (the setup flow)
            while (check_id in self.selected and check_id not in self.results
                   and self.remaining() > 0):
                self.changed.wait(min(0.05, self.remaining()))
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
        """The configured link ports: what the written configuration uses and what the
        server's policy must allow."""
        return self.options.link_ports

    @property
    def test_ports(self) -> tuple[int, int]:
        """The ports this host's live link tests (MK403, MK404) listen on. One host: the
        configured pair. Several hosts in tunnel mode: the configured pair for the first,
        a free pair of its own for each other (:class:`mkdoctor.fleet.PortBroker`). In
        direct mode the configured pair, taken in turn: the wait does not count against
        this host's deadline."""
        broker = self.fleet.ports
        if self.mode == "tunnel":
            return broker.tunnel_pair(self)
        start = time.monotonic()
        pair = broker.direct_pair(self, self.remaining() + 3600)
        self.credit(time.monotonic() - start)
        if pair is None:  # interrupted (or an hour's wait: another host is stuck)
            raise DeadlineExceeded()
        return pair

    def hop_slot(self, timeout: float, weight: int = 1):
        """A slot for one connection to this host's first hop (see HopGate): held while
        connecting and authenticating so that hosts behind one jump host or server stay
        under its MaxStartups. The wait does not count against this host's deadline."""
        return _HopSlot(self, timeout, weight)

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
                    gate=lambda timeout: self.hop_slot(4 * timeout + 30),
                )
                self._own_ssh = True
            return self._ssh

    def first_hop(self) -> Optional[tuple[str, int]]:
        """(host, port) of where ssh connects first (the jump host with ProxyJump), or
        None without a target or behind a ProxyCommand (nothing we can count)."""
        if self.target is None:
            return None

        from mkdoctor.openssh.session import RemoteUnavailable

        try:
            ep = self.endpoint()
        except (RemoteUnavailable, DeadlineExceeded):
            return None
        return None if ep.proxycommand else (ep.host.lower(), ep.port)

    def endpoint(self):
        """Where ssh connects first (``ssh -G``, and the jump host's own with ProxyJump),
        worked out once per run (:func:`mkdoctor.openssh.session.endpoint`)."""
        from mkdoctor.openssh.session import endpoint

        return self.cached("ssh.endpoint", lambda: endpoint(self.ssh, self.step_timeout()))

    # --- the run's login ----------------------------------------------------------------

    def login_judged(self) -> bool:
        """Whether the host's key is judged by MK303 (the first hop is the host itself, no
        ProxyJump or ProxyCommand): then the login refuses any key known_hosts does not
        hold (``StrictHostKeyChecking=yes``), since it runs while MK303 still judges."""
        from mkdoctor.openssh.session import RemoteUnavailable

        try:
            ep = self.endpoint()
        except RemoteUnavailable:  # MK301 reports it; log in as the user's ssh would
            return False
        return not ep.proxycommand and not ep.via

    def login(self):
        """The run's one login, as the remote checks share it (MK304 reports it):
        idempotent, so a login :meth:`begin_login` started is the one every caller gets."""
        return self.ssh.login(self.step_timeout(self.options.timeout * 2 + 2),
                              strict_host_key=self.login_judged())

    def begin_login(self) -> None:
        """Start :meth:`login` now, in the background: the command line does so for a
        run of one host that checks everything, while Python loads the checks (about
        0.1 s), instead of when the checks start. Whatever it meets, MK304 reports (a
        failure here is only the login's outcome; anything else is left for MK304 to
        meet again). :meth:`close` ends it if it still runs, before the connection."""
        def go() -> None:
            try:
                self.login()
            except Exception:  # noqa: BLE001 - MK304 logs in itself and reports it
                pass

        self._early_login = threading.Thread(target=go, name="early-login", daemon=True)
        self._early_login.start()

    def close(self) -> None:
        early = self._early_login
        if early is not None and early.is_alive():
            # the run ended (Ctrl-C, SIGTERM, a usage error) while the login it began
            # still runs: end it rather than wait for it, and only then the connection
            self.runner.kill_all()
            early.join(5)
        with self._lock:
            ssh, self._ssh = self._ssh, None
        if ssh is not None and self._own_ssh:
            ssh.close()
        self.fleet.ports.release(self)
        self.fleet.discharge(self)


class _HopSlot:
    def __init__(self, ctx: Context, timeout: float, weight: int) -> None:
        self.ctx, self.timeout, self.weight, self._cm = ctx, timeout, weight, None

    def __enter__(self) -> float:
        self._cm = self.ctx.fleet.hops.slot(self.ctx.first_hop(), self.timeout, self.weight)
        waited = self._cm.__enter__()
        self.ctx.credit(waited)
        return waited

    def __exit__(self, *exc) -> None:
        assert self._cm is not None
        self._cm.__exit__(*exc)
