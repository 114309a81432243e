"""The check engine: dependency order, concurrency, timeouts, the deadline.

The engine knows nothing about any particular check: it reads ``needs``, ``after``,
``preconditions`` and the declared run inputs (``reads``/``decides``: a check that reads
the mode waits for the check that decides it) from each :class:`~mkdoctor.model.Check`, starts every check whose
prerequisites have finished, in its own thread, and collects the results. Checks run
concurrently but are returned in catalogue order, so the same setup always gives the
same report.

Rules:
- A check whose prerequisite (``needs``) did not pass or warn is skipped, naming it;
  for ``needs_if_run`` only a failure, an error or a blocked prerequisite counts. A
  prerequisite in ``overlaps`` runs at the same time as the check, whose result is then
  replaced by that same skip if the prerequisite blocks it.
- A check that raises is reported as ``error`` with the error text; the traceback is
  kept for ``-v`` and never shown otherwise.
- When the run's deadline passes, checks still running are reported ``fail`` ("timed
  out after N s"), checks not started are skipped, the cleanups running checks
  registered (``Context.at_deadline``: a remote kernel to end) run for at most
  ``min(--timeout, 5 s)``, every program still running is killed, the checks cut off
  get up to 0.5 s more for their own cleanup (temporary files; their programs are gone, so
  they meet no wait), and the run ends and reports.
- Ctrl-C or SIGTERM ends the run the same way (``Context.end_now``), reports nothing
  more, and the interrupt goes on to the caller.
- Checks outside the selection (``--only``/``--skip``) are not run and do not block
  the checks that depend on them.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Callable, Optional, Sequence

from mkdoctor.context import Context, DeadlineExceeded
from mkdoctor.model import Check, Result, Status, blocked_skip
from mkdoctor.proc import set_current_log

OnResult = Callable[[Check, Result], None]
OnStart = Callable[[Check], None]
BUG_FIX = "this is a bug in mkdoctor; please report it with the output of -v"
RERUN_FIX = "run mkdoctor again: the run was stopped before this check ended"
DEADLINE_CLEANUP_S = 5.0  # at most this long past the deadline for checks' cleanups
LATE_JOIN_S = 0.5  # then at most this long for the cut-off checks' own cleanup


def _blocked_skip(dep: Check, dep_result: Result) -> Result:
    return blocked_skip(dep.id, dep.name, dep_result)


def run_checks(
    ctx: Context,
    checks: Sequence[Check],
    on_result: Optional[OnResult] = None,
    on_start: Optional[OnStart] = None,
) -> list[tuple[Check, Result]]:
    selected = {c.id: c for c in checks}
    ctx.selected = set(selected)
    order = [c.id for c in checks]
    results = ctx.results
    for cid in order:  # a context may serve several runs (setup): a re-run replaces
        results.pop(cid, None)

    # Declared run inputs (``reads``/``decides``): a check that reads an input waits for
    # the selected checks that decide it. The engine knows inputs only by name.
    deciders: dict[str, list[str]] = {}
    for c in checks:
        for name, key in c.decides:
            deciders.setdefault(name, []).append(c.id)
            ctx.deciders.setdefault(name, [])
            if (c.id, key) not in ctx.deciders[name]:
                ctx.deciders[name].append((c.id, key))
    waits_for = {c.id: tuple(d for name in c.inputs_read for d in deciders.get(name, ())
                             if d != c.id) for c in checks}

    def all_done() -> bool:
        return all(cid in results for cid in order)

    cond = ctx.changed  # Context.wait_result waits on it too
    running: dict[str, float] = {}
    threads: dict[str, threading.Thread] = {}
    done_order: list[str] = []

    def finish(check: Check, result: Result) -> None:
        # Under the (re-entrant) lock, callback included: when run_checks returns, every
        # on_result call has returned too, and none comes after.
        with cond:
            if check.id in results:  # already reported as timed out
                return
            results[check.id] = result
            running.pop(check.id, None)
            done_order.append(check.id)
            if on_result and not ctx.interrupted:  # an interrupted run reports nothing
                on_result(check, result)
            cond.notify_all()

    def worker(check: Check) -> None:
        started = time.monotonic()
        commands: list[str] = []
        set_current_log(commands)
        try:
            result = check.run(ctx)
            if not isinstance(result, Result):
                raise TypeError(f"{check.id} returned {type(result).__name__}, not a Result")
        except DeadlineExceeded:
            result = Result(
                Status.FAIL,
                f"timed out after {ctx.options.deadline:g} s (the run's --deadline)",
                fix=f"re-run with a longer --deadline (now {ctx.options.deadline:g} s)",
            )
        except Exception as exc:  # noqa: BLE001 - any failure of a check is reported
            result = Result(
                Status.ERROR,
                f"the check itself broke: {type(exc).__name__}: {exc}",
                fix=BUG_FIX,
                traceback=traceback.format_exc(),
            )
        finally:
            set_current_log(None)
        result.commands = commands + result.commands
        result.duration_s = round(time.monotonic() - started, 3)
        late = [d for d in check.overlaps if d in selected]
        if late:  # it overlapped these: its result stands only if they do not block it
            with cond:
                while not all(d in results for d in late) and ctx.remaining() > 0:
                    cond.wait(timeout=min(ctx.remaining(), 0.5))
                failed_dep = next((d for d in late if d in results
                                   and blocks(d, d in check.needs)), None)
            if failed_dep is not None:
                skip = _blocked_skip(selected[failed_dep], results[failed_dep])
                skip.commands, skip.duration_s = result.commands, result.duration_s
                result = skip
        finish(check, result)

    def ready(check: Check) -> bool:
        # overlaps are not waited for here: the worker waits for them after the run
        deps = [d for d in (*check.needs, *check.needs_if_run, *check.after, *waits_for[check.id])
                if d in selected and d not in check.overlaps]
        return all(d in results for d in deps)

    def blocks(dep: str, strict: bool) -> bool:
        result = results[dep]
        if strict:
            return not result.status.ok
        return result.status in (Status.FAIL, Status.ERROR) or result.blocked_by not in ("", "precondition")

    def blocked(check: Check) -> Optional[Result]:
        # Not applicable comes first: "no remote host given" says more than "MK301 skipped".
        for pre in check.preconditions:
            said = pre(ctx)
            if said:
                reason, fix = said if isinstance(said, tuple) else (said, "")
                return Result(Status.SKIP, f"skipped: {reason}", fix=fix, blocked_by="precondition")
        prerequisites = [(d, True) for d in check.needs] + [(d, False) for d in check.needs_if_run]
        for dep, strict in prerequisites:
            if dep in selected and dep in results and blocks(dep, strict):
                return _blocked_skip(selected[dep], results[dep])
        return None

    # the order checks are started in when several are ready: long ones first (their end
    # is the run's), else the catalogue's
    pending = sorted(order, key=lambda cid: not selected[cid].long_running)

    def schedule(pending: list[str]) -> None:
        while not all_done():
            decided = False  # a result decided in this pass (a skip) may ready another
            for cid in list(pending):
                check = selected[cid]
                if not ready(check):
                    continue
                pending.remove(cid)
                try:
                    early = blocked(check)
                except Exception as exc:  # noqa: BLE001 - a broken precondition is a bug
                    early = Result(Status.ERROR,
                                   f"the check itself broke: {type(exc).__name__}: {exc}",
                                   fix=BUG_FIX, traceback=traceback.format_exc())
                if early is not None:
                    finish(check, early)
                    decided = True
                    continue
                running[cid] = time.monotonic()
                if on_start:  # the live status line: what runs now, and since when
                    on_start(check)
                threads[cid] = threading.Thread(target=worker, args=(check,), name=cid,
                                                daemon=True)
                threads[cid].start()
            if all_done():
                break
            if decided:  # look again before waiting: nothing else would wake this loop
                continue
            if not running and pending and not any(ready(selected[c]) for c in pending):
                raise RuntimeError(f"dependency cycle among {pending}")  # a registry bug
            left = ctx.remaining()
            if left <= 0:
                break
            cond.wait(timeout=min(left, 0.5))

    interrupt: Optional[BaseException] = None
    late: list[str] = []
    with cond:
        try:
            schedule(pending)
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: end as at the deadline
            interrupt = exc
            ctx.end_now()
        if not all_done():  # the deadline passed, or the run was interrupted
            late = list(running)
            # what running checks registered (a remote kernel to end) goes first, while
            # the connection is up; then every program of the run is killed
            ctx.run_deadline_cleanups(min(ctx.options.timeout, DEADLINE_CLEANUP_S))
            ctx.runner.kill_all()
            for cid in late:
                results[cid] = _ended_late(ctx, time.monotonic() - running[cid])
            for cid in order:
                if cid not in results:
                    results[cid] = _not_started(ctx)
            if on_result and not ctx.interrupted:  # an interrupted run reports nothing
                for cid in order:
                    if cid not in done_order:
                        on_result(selected[cid], results[cid])
    # The checks cut off go on to their own cleanup (temporary files, the forwards they
    # asked for) and find every program killed: give them a moment before the run ends
    # and their threads with it.
    end = time.monotonic() + LATE_JOIN_S
    for cid in late:
        threads[cid].join(max(0.0, end - time.monotonic()))
    if interrupt is not None:
        raise interrupt
    return [(selected[cid], results[cid]) for cid in order]


def _ended_late(ctx: Context, ran_s: float) -> Result:
    """The result of a check still at work when the run ended."""
    if ctx.interrupted:
        return Result(Status.FAIL, "stopped: the run was interrupted (Ctrl-C or SIGTERM)",
                      fix=RERUN_FIX, facts={"reason": "interrupted"})
    return Result(
        Status.FAIL,
        f"timed out after {ran_s:.0f} s: the run's --deadline of {ctx.options.deadline:g} s "
        "passed",
        fix=f"re-run with a longer --deadline (now {ctx.options.deadline:g} s), "
        "or find what makes this step hang with -v",
        facts={"reason": "deadline"},
    )


def _not_started(ctx: Context) -> Result:
    """The result of a check the run ended before."""
    if ctx.interrupted:
        return Result(Status.SKIP, "skipped: the run was interrupted", fix=RERUN_FIX,
                      blocked_by="deadline")
    return Result(
        Status.SKIP,
        f"skipped: not started before the run's --deadline of {ctx.options.deadline:g} s passed",
        fix="re-run with a longer --deadline",
        blocked_by="deadline",
    )


def exit_status(results: Sequence[tuple[Check, Result]], strict: bool = False) -> int:
    """0: no check failed; 1: a check failed or broke (or, with ``strict``, warned)."""
    bad = {Status.FAIL, Status.ERROR} | ({Status.WARN} if strict else set())
    return 1 if any(r.status in bad for _, r in results) else 0
