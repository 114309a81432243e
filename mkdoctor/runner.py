"""One run of the selected checks against each target, each with its own context.

Several hosts (``--host`` repeated, ``--hosts-file``) are checked ``--jobs`` at a time;
each host's run has its own SSH connection and its own ``--deadline``.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

from mkdoctor import __version__
from mkdoctor.context import Context
from mkdoctor.engine import OnResult, run_checks
from mkdoctor.model import Check
from mkdoctor.options import Options, Target
from mkdoctor.reports import Report

NO_TARGET_NOTE = (
    "No remote host given: only this computer was checked. Add one with\n"
    "  mkdoctor --host USER@HOST        (or a Host alias from ~/.ssh/config)\n"
    "or run `mkdoctor setup` to set up a remote kernel step by step."
)


def target_info(ctx: Context) -> dict:
    t = ctx.target
    prof = ctx.options.profile
    return {
        "destination": t.display if t else None,
        "host": t.host if t else None,
        "user": t.user if t else None,
        "port": t.port if t else None,
        "profile": getattr(prof, "name", None),
        "mode": ctx.mode,
        "link_ports": list(ctx.link_ports),
        "kernel": ctx.options.kernel,
    }


def run_one(options: Options, target: Optional[Target], checks: Sequence[Check],
            on_result: Optional[OnResult] = None, live=None, index: int = 0) -> Report:  # noqa: ANN001
    """``live``: a :class:`mkdoctor.live.CheckStream` told of each start and result."""
    ctx = Context(options, target)
    started = time.monotonic()
    on_start = None
    if live is not None:
        live.host_started(index, ctx)
        on_start = lambda c: live.check_started(index, c)  # noqa: E731

        def on_result(c, r, _outer=on_result):  # noqa: ANN001
            live.check_done(index, c, r)
            if _outer:
                _outer(c, r)
    try:
        results = run_checks(ctx, checks, on_result, on_start)
    finally:
        ctx.close()
    notes = [] if target else [NO_TARGET_NOTE]
    report = Report(__version__, target_info(ctx), results, time.monotonic() - started, notes)
    if live is not None:
        live.host_done(index, report)
    return report


def _interrupt(signum, frame):  # noqa: ANN001 - signal handler signature
    raise KeyboardInterrupt


def run_targets(options: Options, targets: Sequence[Optional[Target]], checks: Sequence[Check],
                jobs: int = 1, live=None) -> list[Report]:  # noqa: ANN001
    # SIGTERM ends the run like Ctrl-C does, so the SSH master is closed on the way out.
    try:
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        pass
    if len(targets) == 1 or jobs == 1:
        return [run_one(options, t, checks, live=live, index=i) for i, t in enumerate(targets)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda it: run_one(options, it[1], checks, live=live, index=it[0]),
                             enumerate(targets)))
