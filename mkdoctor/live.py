"""Live output on a terminal: permanent lines as they are known, and one status line.

:class:`LivePrinter` is the reusable part (the check command uses it for its results, the
setup wizard can use it for its long steps)::

    printer = LivePrinter()                 # sys.stdout; animated only on a terminal, not under CI
    with printer:                           # starts the ticker; on every exit the status line is gone
        printer.line("✓ MK304 passwordless-login  ...")   # a permanent line, printed now
        with printer.step("copying the key to ws"):        # status "copying the key to ws … 3 s"
            do_the_slow_thing()
        printer.start("MK402", "MK402 kernel-starts: starting the kernel", order=14)
        printer.stop("MK402")               # named activities; the lowest ``order`` is shown
        printer.prefix = "hosts 1/3 done, 2 running"     # shown before the activity

Animated (a terminal, ``CI`` unset or empty): the status line is redrawn in place twice a
second with a carriage return, and blanked with spaces (never an escape sequence, so
``NO_COLOR`` needs no special case) before each permanent line. Not animated (piped, under
``CI``, or when the caller says so): permanent lines only, each flushed as it is printed,
no carriage return and no status text at all.

:class:`CheckStream` prints a run's results in catalogue order as soon as a result and
every result before it are known; several hosts are printed host by host, in the order
given, each as soon as it and the hosts before it are done (the first unfinished host
streams its lines live), followed by the per-host table.

Only the standard library: no start-up cost for ``mkdoctor --help`` (this module is
imported by the check command only).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from typing import IO, Callable, Iterator, Optional, Sequence

TICK_S = 0.5
_STEPS = itertools.count()


def animation_allowed(stream: IO[str]) -> bool:
    """A status line may be drawn: ``stream`` is a terminal and ``CI`` is unset or empty."""
    if os.environ.get("CI"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


class LivePrinter:
    """Permanent lines and one status line on ``stream`` (thread-safe)."""

    def __init__(self, stream: Optional[IO[str]] = None, animate: Optional[bool] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.animate = animation_allowed(self.stream) if animate is None else animate
        self.prefix = ""
        self._clock = clock
        self._lock = threading.RLock()
        self._activities: dict[str, tuple[str, float, float]] = {}  # key: (text, order, since)
        self._shown = 0  # width of the status line on the screen now
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # --- the API ---------------------------------------------------------------------------

    def line(self, text: str = "") -> None:
        """Print ``text`` (one or more lines) for good, above the status line."""
        with self._lock:
            self._blank()
            self.stream.write(text + "\n")
            self._draw()
            self.stream.flush()

    def start(self, key: str, text: str, order: float = 0.0) -> None:
        """An activity began: the status line names the one with the lowest ``order``."""
        with self._lock:
            self._activities[key] = (text, order, self._clock())
            self._redraw()

    def stop(self, key: str) -> None:
        with self._lock:
            self._activities.pop(key, None)
            self._redraw()

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        """``text … N s`` on the status line while the block runs."""
        key = f"step-{next(_STEPS)}"
        self.start(key, text, order=-1.0)
        try:
            yield
        finally:
            self.stop(key)

    def status_text(self) -> str:
        """What the status line says now ('' when nothing runs)."""
        with self._lock:
            parts = [self.prefix] if self.prefix else []
            if self._activities:
                text, _, since = min(self._activities.values(), key=lambda a: (a[1], a[2]))
                more = len(self._activities) - 1
                parts.append(f"{text} … {elapsed(self._clock() - since)}"
                             + (f" (+{more} more)" if more else ""))
            return " · ".join(parts)

    def __enter__(self) -> "LivePrinter":
        if self.animate and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._tick, name="mkdoctor-status", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the ticker and blank the status line (every exit path: Ctrl-C too)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2)
        with self._lock:
            self._activities.clear()
            self._blank()
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass

    # --- drawing -------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                self._redraw()

    def _width(self) -> int:
        return max(20, shutil.get_terminal_size((80, 24)).columns - 1)

    def _blank(self) -> None:
        if self.animate and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def _draw(self) -> None:
        if not self.animate:
            return
        text = self.status_text()
        width = self._width()
        if len(text) > width:  # never wrap: a wrapped line cannot be redrawn with \r
            text = text[: width - 1] + "…"
        if text:
            self.stream.write(text)
        self._shown = len(text)

    def _redraw(self) -> None:
        if not self.animate:
            return
        try:
            self._blank()
            self._draw()
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: say nothing more
            self.animate = False


# --------------------------------------------------------------------------------- checks

# What a check is doing, for the status line; a check not listed shows its title.
DOING = {
    "MK101": "reading the network interfaces",
    "MK102": "asking a what-is-my-IP service",
    "MK103": "judging NAT",
    "MK201": "running ssh -V",
    "MK202": "reading the key pair",
    "MK203": "trying the link ports",
    "MK204": "reading the firewall",
    "MK205": "reading the local sshd",
    "MK301": "resolving the host name",
    "MK302": "connecting to the SSH port",
    "MK303": "reading the host key",
    "MK304": "logging in",
    "MK305": "reading authorized_keys",
    "MK306": "running a remote shell",
    "MK310": "reading the remote sshd config",
    "MK311": "reading the remote sshd config",
    "MK312": "reading the remote sshd config",
    "MK401": "looking for the kernel",
    "MK402": "starting the kernel",
    "MK403": "testing the link path",
    "MK404": "running the launch command",
    "MK501": "reading the written configuration",
}


def doing(check) -> str:  # noqa: ANN001 - a model.Check
    return f"{check.id} {check.name}: {DOING.get(check.id, check.title)}"


class CheckStream:
    """Prints the text report of one or more hosts while they run (see the module doc).

    The runner calls :meth:`host_started`, :meth:`check_started`, :meth:`check_done` and
    :meth:`host_done` (from any thread); :meth:`finish` prints the per-host table.
    """

    def __init__(self, printer: LivePrinter, checks: Sequence, n_hosts: int,
                 color: bool = False, verbose: bool = False) -> None:
        from mkdoctor.reports import text

        self.text = text
        self.p = printer
        self.checks = list(checks)
        self.index = {c.id: i for i, c in enumerate(self.checks)}
        self.width = max((len(f"{c.id} {c.name}") for c in self.checks), default=20)
        self.n = n_hosts
        self.color, self.verbose = color, verbose
        self._lock = threading.RLock()
        self._hosts: list[dict] = [{"ctx": None, "results": {}, "header": None, "next": 0,
                                    "report": None, "name": ""} for _ in range(n_hosts)]
        self._head = 0  # the first host not printed to its end
        self._done = 0
        self._running = 0
        self.reports: list = [None] * n_hosts
        self._progress()

    # --- events ------------------------------------------------------------------------

    def host_started(self, i: int, ctx) -> None:  # noqa: ANN001
        with self._lock:
            h = self._hosts[i]
            h["ctx"] = ctx
            h["name"] = ctx.target.display if ctx.target else "this computer"
            self._running += 1
            self._progress()
            self._flush()

    def check_started(self, i: int, check) -> None:  # noqa: ANN001
        where = f" on {self._hosts[i]['name']}" if self.n > 1 else ""
        order = i * 1000 + self.index.get(check.id, 0)
        self.p.start(f"{i}:{check.id}", doing(check) + where, order=order)

    def check_done(self, i: int, check, result) -> None:  # noqa: ANN001
        self.p.stop(f"{i}:{check.id}")
        with self._lock:
            self._hosts[i]["results"][check.id] = result
            self._flush()

    def host_done(self, i: int, report) -> None:  # noqa: ANN001
        with self._lock:
            h = self._hosts[i]
            h["report"] = report
            self.reports[i] = report
            self._running -= 1
            self._done += 1
            self._progress()
            self._flush()

    def finish(self) -> None:
        with self._lock:
            reports = [r for r in self.reports if r is not None]
            if len(reports) > 1:
                self.p.line("\n".join(self.text.fleet_table(reports, self.color)))

    # --- printing in order -----------------------------------------------------------------

    def _progress(self) -> None:
        if self.n > 1:  # nothing left to say once every host is done
            self.p.prefix = ("" if self._done == self.n else
                             f"hosts {self._done}/{self.n} done, {self._running} running")

    def _header_known(self, h: dict) -> Optional[str]:
        """The header, once the mode is final (given, or MK103 decided or is not run)."""
        ctx = h["ctx"]
        if ctx is None:
            return None
        if not (ctx.options.mode or "MK103" not in self.index or "MK103" in h["results"]
                or h["report"] is not None):
            return None
        from mkdoctor import __version__
        from mkdoctor.reports import Report
        from mkdoctor.runner import target_info

        return self.text.header(Report(__version__, target_info(ctx), [], 0.0))

    def _flush(self) -> None:
        from mkdoctor.reports import _visible_report, _visible_result

        while self._head < self.n:
            h = self._hosts[self._head]
            if h["header"] is None:
                head = self._header_known(h)
                if head is None:
                    return
                h["header"] = head
                self.p.line(("\n" if self._head else "") + head + "\n")
            while h["next"] < len(self.checks):
                check = self.checks[h["next"]]
                result = h["results"].get(check.id)
                if result is None:
                    break
                lines = self.text.check_entry(check, _visible_result(result), self.color,
                                              self.width, self.verbose)
                self.p.line("\n".join(lines))
                h["next"] += 1
            if h["report"] is None:
                return
            self.p.line("\n".join(self.text.tail_lines(_visible_report(h["report"]), self.color,
                                                       self.verbose)))
            self._head += 1
