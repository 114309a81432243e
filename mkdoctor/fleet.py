"""What the hosts of one run share: the laptop's link ports and the first hops.

Several hosts are checked at once (``--host`` repeated, ``--hosts-file``; ``--jobs``), each
with its own context, SSH connection and deadline. Two things are not theirs alone:

* **The laptop's link ports.** MK403 and MK404 listen on them while they test. In tunnel
  mode the listeners are on the laptop's loopback and the forwards on each server's, so
  the first host to test gets the configured pair and every other host a free pair of its
  own (:class:`PortBroker`): the path and the written command are proven the same way,
  with only the port numbers told apart, and the report says which pair each host used.
  In direct mode the kernel connects to the laptop's address, where a firewall may let in
  only the configured pair: those tests take the configured pair in turn (a lock), and
  the time spent waiting is not taken from the host's ``--deadline``.
* **A first hop.** Hosts behind one jump host (a login node, a bastion), or many Host
  aliases of one server, all knock on one sshd. sshd's ``MaxStartups`` (default
  ``10:30:100``) drops connections at random once 10 are unauthenticated (sshd_config(5),
  MaxStartups), which looked like broken hosts. :class:`HopGate` lets at most
  :data:`PER_HOP` connections per first hop be in their key exchange and authentication at
  a time; a login dropped during key exchange is retried once after a short random pause
  (:func:`startup_dropped` tells such a drop from a refusal).

Checks that do not depend on a host (this computer: addresses, NAT, ssh client, key,
ports, firewall, local sshd) run once per run and their results are shared by every host's
report (:func:`split_local`).
"""

from __future__ import annotations

import dataclasses
import random
import re
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from mkdoctor.model import Check, needs_target

# At most this many connections per first hop in key exchange/authentication at once:
# below sshd's default MaxStartups start value (10), leaving room for other clients.
PER_HOP = 6
# A login dropped during key exchange is retried once after a pause in this range (s).
RETRY_PAUSE = (0.3, 1.2)

# What ssh prints when sshd closed the connection before the key exchange finished: the
# MaxStartups drop (sshd.c drop_connection closes the socket), a LoginGraceTime expiry, or
# TCP wrappers. OpenSSH 8.2+ says "kex_exchange_identification: ...", older releases
# "ssh_exchange_identification: ..." (sshconnect.c / kex.c).
_STARTUP_DROP = re.compile(
    r"(kex|ssh)_exchange_identification: (read: Connection reset by peer|"
    r"Connection closed by remote host|banner line contains invalid characters)"
    r"|Connection reset by \S+ port \d+"
    r"|Connection closed by \S+ port \d+$",
    re.M)


def startup_dropped(stderr: str) -> bool:
    """True when ssh's words say the server dropped us before authentication (the
    MaxStartups symptom), not that it refused us."""
    # Through a jump host the inner ssh says "Connection closed" too when the jump host
    # could not reach the target ("channel 0: open failed: connect failed: ...", "stdio
    # forwarding failed"): that is a path problem, not MaxStartups.
    if re.search(r"Permission denied|Host key verification failed|IDENTIFICATION HAS CHANGED"
                 r"|Connection refused|Could not resolve|open failed|forwarding failed"
                 r"|No route to host|Network is unreachable", stderr):
        return False
    return bool(_STARTUP_DROP.search(stderr))


def retry_pause() -> float:
    return random.uniform(*RETRY_PAUSE)


# ----------------------------------------------------------------------- local checks


def host_dependent(checks: Sequence[Check]) -> set[str]:
    """IDs of the checks that depend on a host: those that need a target, and every check
    that depends (needs, needs_if_run, after) on one of them."""
    by_id = {c.id: c for c in checks}
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for c in checks:
            if c.id in found:
                continue
            deps = (*c.needs, *c.needs_if_run, *c.after)
            if (c.per_host or needs_target in c.preconditions
                    or any(d in found for d in deps if d in by_id)):
                found.add(c.id)
                changed = True
    return found


def split_local(checks: Sequence[Check]) -> tuple[list[Check], list[Check]]:
    """(checks of this computer, checks of a host), each in catalogue order."""
    per_host = host_dependent(checks)
    return [c for c in checks if c.id not in per_host], [c for c in checks if c.id in per_host]


# ----------------------------------------------------------------------- link ports

# Pairs handed to extra hosts come from below every system's ephemeral port range (Linux
# 32768-60999, ip_local_port_range; macOS, BSD and Windows 49152-65535): an outgoing
# connection of this laptop (ssh itself, the forwarded kernel connections) may otherwise
# take one of them as its local port between two tests, and the listener cannot bind it.
LEASE_RANGE = (20000, 32766)


def _free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (and it can be bound now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortBroker:
    """Hands each host of the run the link ports its tests listen on."""

    def __init__(self, configured: tuple[int, int], shared: bool,
                 rng: Optional[random.Random] = None) -> None:
        self.configured = tuple(configured)
        self.shared = shared  # several hosts in this run
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._leases: dict[object, tuple[int, int]] = {}
        self._holder: Optional[object] = None  # who has the configured pair
        self._direct = threading.Condition(self._lock)
        self._stopped = False  # the run was interrupted: no more waiting (stop)
        self.waited: dict[object, float] = {}
        # id(owner) -> the pair its tests used (kept after release, for the report)
        self.tested: dict[int, tuple[int, int]] = {}

    def _pick(self) -> tuple[int, int]:
        taken = {p for pair in self._leases.values() for p in pair} | set(self.configured)
        for _ in range(200):
            p = self._rng.randrange(*LEASE_RANGE)
            pair = (p, p + 1)
            if not taken & set(pair) and all(_free(x) for x in pair):
                return pair
        raise RuntimeError("no free pair of link ports on this laptop")

    def tunnel_pair(self, owner: object) -> tuple[int, int]:
        """The pair ``owner`` (a host's context) tests with in tunnel mode: the configured
        pair for the first host, a free pair of its own for every other one."""
        with self._lock:
            if owner not in self._leases:
                if not self.shared or self._holder is None:
                    self._holder = owner if self.shared else None
                    self._leases[owner] = self.configured
                else:
                    self._leases[owner] = self._pick()
                self.tested[id(owner)] = self._leases[owner]
            return self._leases[owner]

    def direct_pair(self, owner: object, timeout: float) -> Optional[tuple[int, int]]:
        """Direct mode: wait (at most ``timeout`` s) until no other host tests with the
        configured pair, then hold it until :meth:`release`. None when the wait ran out."""
        if not self.shared:
            return self.configured
        start = time.monotonic()
        with self._direct:
            while self._holder not in (None, owner):
                left = timeout - (time.monotonic() - start)
                if left <= 0 or self._stopped:
                    return None
                self._direct.wait(left)
            self._holder = owner
            self._leases[owner] = self.configured
            self.tested[id(owner)] = self.configured
            self.waited[owner] = self.waited.get(owner, 0.0) + time.monotonic() - start
        return self.configured

    def stop(self) -> None:
        """The run was interrupted: every wait for the configured pair ends now (None)."""
        with self._direct:
            self._stopped = True
            self._direct.notify_all()

    def release(self, owner: object) -> None:
        """The host's run is over: its pair is free again."""
        with self._direct:
            self._leases.pop(owner, None)
            if self._holder is owner:
                self._holder = None
                self._direct.notify_all()


# ----------------------------------------------------------------------- first hops


class HopGate:
    """At most ``limit`` connections per first hop in key exchange and authentication.

    A step that opens several connections at once takes that many slots (``ssh-keyscan``
    opens one per host key type)."""

    def __init__(self, limit: int = PER_HOP) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._inside: dict[tuple[str, int], int] = {}
        self.peak: dict[tuple[str, int], int] = {}
        self._stopped = False  # the run was interrupted: no more waiting (stop)

    def stop(self) -> None:
        """The run was interrupted: every wait for a slot ends now (the caller goes
        ahead and meets a run whose programs are ended)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @contextmanager
    def slot(self, hop: Optional[tuple[str, int]], timeout: float,
             weight: int = 1) -> Iterator[float]:
        """Hold ``weight`` slots of ``hop`` (host, port) while connecting; yields the
        seconds spent waiting for them (0 when ``hop`` is None: nothing to share)."""
        if hop is None:
            yield 0.0
            return
        weight = max(1, min(weight, self.limit))
        start = time.monotonic()
        with self._cond:
            while self._inside.get(hop, 0) + weight > self.limit:
                left = timeout - (time.monotonic() - start)
                if left <= 0 or self._stopped:
                    break  # go ahead all the same: a retry follows a drop
                self._cond.wait(left)
            self._inside[hop] = self._inside.get(hop, 0) + weight
            self.peak[hop] = max(self.peak.get(hop, 0), self._inside[hop])
        waited = time.monotonic() - start
        try:
            yield waited
        finally:
            with self._cond:
                self._inside[hop] -= weight
                self._cond.notify_all()


class Fleet:
    """What the hosts of one run share (one per run; a run of one host has one too)."""

    def __init__(self, link_ports: tuple[int, int], hosts: int = 1) -> None:
        self.ports = PortBroker(link_ports, shared=hosts > 1)
        self.hops = HopGate()
        self.hosts = hosts
        self._once_lock = threading.Lock()
        self._once: dict[str, tuple[threading.Lock, list]] = {}
        # the contexts of the hosts being checked (stop ends them all)
        self._running: list = []
        self.stopped = False

    def enlist(self, ctx) -> None:  # noqa: ANN001 - a Context
        """``ctx`` checks one host of this run until :meth:`discharge`; a context
        enlisted after :meth:`stop` is ended at once."""
        with self._once_lock:
            self._running.append(ctx)
            stopped = self.stopped
        if stopped:
            ctx.end_now()

    def discharge(self, ctx) -> None:  # noqa: ANN001 - a Context
        with self._once_lock:
            if ctx in self._running:
                self._running.remove(ctx)

    def stop(self) -> None:
        """The run was interrupted (Ctrl-C, SIGTERM): every host's run ends now, as at
        its deadline (:meth:`mkdoctor.context.Context.end_now`: what a check started on a
        server is ended, every program is killed), and nothing waits for a shared
        resource any more."""
        with self._once_lock:
            self.stopped = True
            running = list(self._running)
        self.hops.stop()
        self.ports.stop()
        for ctx in running:
            ctx.end_now()

    def once(self, check: Check) -> Check:
        """``check`` whose run happens once for the whole run: the first host's engine
        runs it, every other host's gets a copy of the same result (checks of this
        computer, :func:`split_local`)."""
        with self._once_lock:
            lock, box = self._once.setdefault(check.id, (threading.Lock(), []))

        def run(ctx):  # noqa: ANN001, ANN202 - a Check.run
            with lock:
                if not box:
                    try:
                        box.append((True, check.run(ctx)))
                    except Exception as exc:  # noqa: BLE001 - raised to every host
                        box.append((False, exc))
            ok, value = box[0]
            if not ok:
                raise value
            return dataclasses.replace(value, details=list(value.details),
                                       commands=list(value.commands), facts=dict(value.facts))

        return dataclasses.replace(check, run=run)
