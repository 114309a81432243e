"""One run of the selected checks against each target, each with its own context.

Several hosts (``--host`` repeated, ``--hosts-file``) are checked ``--jobs`` at a time
(default: all of them, up to 16); each host's run has its own SSH connection and its own
``--deadline``, and what they share is arbitrated by :mod:`mkdoctor.fleet`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Optional, Sequence

from mkdoctor import __version__
from mkdoctor.context import Context
from mkdoctor.engine import OnResult, run_checks
from mkdoctor.fleet import Fleet, split_local
from mkdoctor.model import Check
from mkdoctor.options import Options, Target
from mkdoctor.proc import interrupt_on_sigterm
from mkdoctor.reports import Report

# --jobs default: every host at once, up to this many (CHECKS.md).
MAX_JOBS = 16
# How long the main thread waits for the hosts at a time (see run_targets).
INTERRUPT_POLL_S = 0.2

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
        # the pair this host's live link tests listened on (another pair than link_ports
        # when several hosts were checked at once in tunnel mode: mkdoctor.fleet)
        "tested_ports": list(ctx.fleet.ports.tested.get(id(ctx), ctx.link_ports)),
        "kernel": ctx.options.kernel,
    }


def run_one(options: Options, target: Optional[Target], checks: Sequence[Check],
            on_result: Optional[OnResult] = None, live=None, index: int = 0,  # noqa: ANN001
            fleet: Optional[Fleet] = None, ctx: Optional[Context] = None) -> Report:
    """``live``: a :class:`mkdoctor.live.CheckStream` told of each start and result;
    ``fleet``: what this host shares with the other hosts of the run; ``ctx``: the
    host's context made already (the command line's, with its login begun)."""
    ctx = ctx if ctx is not None else Context(options, target, fleet)
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
    tested = ctx.fleet.ports.tested.get(id(ctx))
    if tested and tuple(tested) != tuple(ctx.link_ports):
        notes.append(f"The live link tests (MK403, MK404) used link ports {tested[0]},{tested[1]}: "
                     f"this run checked several hosts at once and {ctx.link_ports[0]},"
                     f"{ctx.link_ports[1]} were in use by another host's test. The written "
                     "configuration is the same but for the port numbers.")
    report = Report(__version__, target_info(ctx), results, time.monotonic() - started, notes)
    if live is not None and not ctx.interrupted:
        live.host_done(index, report)
    return report


def default_jobs(hosts: int) -> int:
    """All hosts at once, up to :data:`MAX_JOBS` (CHECKS.md, --jobs)."""
    return max(1, min(MAX_JOBS, hosts))


def run_targets(options: Options, targets: Sequence[Optional[Target]], checks: Sequence[Check],
                jobs: Optional[int] = None, live=None,  # noqa: ANN001
                prepared: Optional[Context] = None) -> list[Report]:
    """Check every target, ``jobs`` at a time (default: all up to 16), each with its own
    context, SSH connection and deadline. The checks of this computer run once for the
    whole run (:func:`mkdoctor.fleet.split_local`); link ports and first hops are shared
    through one :class:`~mkdoctor.fleet.Fleet`. ``live`` streams the results."""
    # SIGTERM ends the run like Ctrl-C does, so the SSH master is closed on the way out.
    interrupt_on_sigterm()
    if prepared is not None and len(targets) == 1:  # one host: its context is made
        return [run_one(options, targets[0], checks, live=live, fleet=prepared.fleet,
                        ctx=prepared)]
    fleet = Fleet(tuple(options.link_ports), hosts=len(targets))
    if len(targets) > 1:
        local, _ = split_local(checks)
        shared = {c.id: fleet.once(c) for c in local}
        checks = [shared.get(c.id, c) for c in checks]

    def one(i: int, target: Optional[Target]) -> Report:
        return run_one(options, target, checks, live=live, index=i, fleet=fleet)

    jobs = default_jobs(len(targets)) if jobs is None else jobs
    if len(targets) == 1 or jobs == 1:
        return [one(i, t) for i, t in enumerate(targets)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, i, t) for i, t in enumerate(targets)]
        try:
            # Waits of at most INTERRUPT_POLL_S: SIGTERM (or Ctrl-C) may be delivered to
            # any thread, and its handler runs in this one only when it wakes (a wait
            # without a timeout took until every host was done: 21 s, not 0.05 s).
            left = set(futures)
            while left:
                _, left = wait(left, timeout=INTERRUPT_POLL_S)
            return [f.result() for f in futures]
        except BaseException:
            # Ctrl-C or SIGTERM raises in this thread only (the hosts' engines run in the
            # pool's): end every host's run now (as at its deadline: what checks started
            # on the servers is ended, every program killed), start no other host, and
            # let leaving the pool wait for those ends.
            fleet.stop()
            for f in futures:
                f.cancel()
            raise
