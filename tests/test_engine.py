"""The engine's rules, with small in-process checks (no ssh involved).

These are the engine's own unit tests: the checks here are tiny functions, so each rule
(dependency skips, errors, the deadline, catalogue order) is exercised exactly.
"""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from mkdoctor.context import Context
from mkdoctor.engine import exit_status, run_checks
from mkdoctor.model import Check, Result, Status, failed, needs_target, only_mode, passed, skipped
from mkdoctor.options import Options, Target


def make(cid: str, fn, needs=(), after=(), pre=()) -> Check:
    return Check(id=cid, name=f"n{cid}", group="g", title="t", run=fn, needs=needs,
                 after=after, preconditions=pre)


def ctx(**kw) -> Context:
    return Context(Options(**kw))


def statuses(results):
    return {c.id: r.status for c, r in results}


def test_prerequisite_failure_skips_dependants_naming_it():
    checks = [
        make("A", lambda c: failed("a broke", "fix a")),
        make("B", lambda c: passed("b ok"), needs=("A",)),
        make("C", lambda c: passed("c ok"), needs=("B",)),
    ]
    results = run_checks(ctx(), checks)
    s = statuses(results)
    assert s == {"A": Status.FAIL, "B": Status.SKIP, "C": Status.SKIP}
    by = {c.id: r for c, r in results}
    assert by["B"].summary == "skipped: A nA failed"
    assert by["C"].summary == "skipped: B nB was skipped"
    assert by["B"].blocked_by == "A"


def test_warning_prerequisite_lets_dependants_run():
    checks = [make("A", lambda c: Result(Status.WARN, "meh", fix="x")),
              make("B", lambda c: passed("ok"), needs=("A",))]
    assert statuses(run_checks(ctx(), checks))["B"] is Status.PASS


def test_after_waits_for_facts_but_runs_whatever_the_status():
    seen = {}

    def b(c):
        seen["fact"] = c.fact("A", "x")
        return passed("ok")

    checks = [make("A", lambda c: Result(Status.FAIL, "no", fix="f", facts={"x": 42})),
              make("B", b, after=("A",))]
    assert statuses(run_checks(ctx(), checks))["B"] is Status.PASS
    assert seen["fact"] == 42


def test_exception_is_an_error_with_text_and_traceback():
    def boom(c):
        raise ValueError("bad thing")

    results = run_checks(ctx(), [make("A", boom), make("B", lambda c: passed("ok"), needs=("A",))])
    by = {c.id: r for c, r in results}
    assert by["A"].status is Status.ERROR
    assert "ValueError: bad thing" in by["A"].summary
    assert "Traceback" in by["A"].traceback
    assert by["B"].status is Status.SKIP and "broke" in by["B"].summary
    assert exit_status(results) == 1


def test_results_in_catalogue_order_whatever_the_finish_order():
    checks = [make("A", lambda c: (time.sleep(0.3), passed("slow"))[1]),
              make("B", lambda c: passed("fast"))]
    done = []
    results = run_checks(ctx(), checks, on_result=lambda ch, r: done.append(ch.id))
    assert [c.id for c, _ in results] == ["A", "B"]
    assert done == ["B", "A"]


def test_independent_checks_run_concurrently():
    barrier = threading.Barrier(3, timeout=5)

    def meet(c):
        barrier.wait()  # only returns when all three run at the same time
        return passed("met")

    checks = [make(x, meet) for x in "ABC"]
    assert set(statuses(run_checks(ctx(), checks)).values()) == {Status.PASS}


def test_deadline_reports_running_check_as_fail_and_ends_the_run():
    stop = threading.Event()

    def hang(c):
        stop.wait(30)
        return passed("never")

    checks = [make("A", hang), make("B", lambda c: passed("x"), needs=("A",)),
              make("C", lambda c: passed("quick"))]
    t0 = time.monotonic()
    results = run_checks(ctx(deadline=1.0), checks)
    elapsed = time.monotonic() - t0
    stop.set()
    by = {c.id: r for c, r in results}
    assert elapsed < 3
    assert by["A"].status is Status.FAIL and "timed out after" in by["A"].summary
    assert by["B"].status is Status.SKIP and "deadline" in by["B"].summary
    assert by["C"].status is Status.PASS


def test_deadline_kills_running_programs():
    def sleeper(c):
        done = c.run_local(["sleep", "30"], timeout=30)
        return passed("slept") if done.ok else failed("killed", "f")

    t0 = time.monotonic()
    results = run_checks(ctx(deadline=1.0), [make("A", sleeper)])
    assert time.monotonic() - t0 < 3
    assert results[0][1].status is Status.FAIL


def test_interrupt_ends_the_run_as_the_deadline_does_and_is_raised_again():
    """Ctrl-C (SIGTERM, through proc.interrupt_on_sigterm) reaches the thread that runs
    the engine: the cleanup a running check registered runs, its program is killed, no
    other check starts, nothing more is reported, and the interrupt goes on to the
    command line (which says "interrupted")."""
    cleaned = threading.Event()
    started: list[str] = []

    def sleeper(c):
        c.at_deadline(cleaned.set)
        started.append("A")
        done = c.run_local(["sleep", "30"], timeout=30)
        return passed("slept") if done.ok else failed("killed", "f")

    reported: list[str] = []
    run_ctx = ctx(deadline=60.0)
    threading.Timer(0.5, _thread.interrupt_main).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_checks(run_ctx, [make("A", sleeper), make("B", lambda c: passed("x"), needs=("A",))],
                   on_result=lambda c, r: reported.append(c.id))
    assert time.monotonic() - t0 < 3
    assert started == ["A"] and cleaned.is_set() and reported == []
    assert run_ctx.interrupted and run_ctx.results["A"].summary.startswith("stopped")
    assert run_ctx.results["B"].status is Status.SKIP


def test_a_context_ended_from_another_thread_ends_its_run_at_once():
    """What a run of several hosts does to each host's engine when the main thread is
    interrupted (Fleet.stop -> Context.end_now)."""
    run_ctx = ctx(deadline=60.0)
    threading.Timer(0.3, run_ctx.end_now).start()
    t0 = time.monotonic()
    results = run_checks(run_ctx, [make("A", lambda c: passed("x") if c.run_local(
        ["sleep", "30"], timeout=30).ok else failed("killed", "f"))])
    assert time.monotonic() - t0 < 2
    assert results[0][1].status is Status.FAIL and "interrupted" in results[0][1].summary


def test_preconditions_skip_with_reason():
    checks = [make("A", lambda c: passed("x"), pre=(needs_target,)),
              make("B", lambda c: passed("x"), pre=(only_mode("direct"),))]
    by = {c.id: r for c, r in run_checks(ctx(mode="tunnel"), checks)}
    assert by["A"].status is Status.SKIP and "no remote host" in by["A"].summary
    assert by["B"].status is Status.SKIP and "tunnel mode" in by["B"].summary
    assert by["A"].blocked_by == "precondition"


def test_unselected_prerequisite_does_not_block():
    only_b = [make("B", lambda c: passed("ok"), needs=("A",))]
    assert statuses(run_checks(ctx(), only_b))["B"] is Status.PASS


def test_commands_are_recorded_per_check():
    def runs(c):
        c.run_local(["true"])
        return passed("ok")

    results = run_checks(ctx(), [make("A", runs)])
    assert results[0][1].commands == ["true"]


@pytest.mark.parametrize(
    "status, strict, code",
    [(Status.PASS, False, 0), (Status.WARN, False, 0), (Status.WARN, True, 1),
     (Status.SKIP, True, 0), (Status.FAIL, False, 1), (Status.ERROR, False, 1)],
)
def test_exit_status(status, strict, code):
    results = [(make("A", None), Result(status, "s", fix="f"))]
    assert exit_status(results, strict) == code


def test_mode_prefers_flag_then_mk103_then_tunnel():
    c = ctx()
    assert c.mode == "tunnel"
    c.results["MK103"] = passed("nat", recommended_mode="direct")
    assert c.mode == "tunnel"  # a fact alone decides nothing: MK103 declares it decides the mode
    c.deciders["mode"] = [("MK103", "recommended_mode")]  # what the engine registers from it
    assert c.mode == "direct"
    assert ctx(mode="tunnel").mode == "tunnel"


def test_skip_is_never_counted_as_failure():
    results = run_checks(ctx(), [make("A", lambda c: skipped("offline"))])
    assert exit_status(results, strict=True) == 0


def test_target_display():
    assert Target("h", "u", 2222).display == "u@h:2222"


def test_needs_if_run_ignores_a_chosen_skip_but_not_a_failure_or_a_block():
    def mk(cid, fn, **kw):
        return Check(id=cid, name=f"n{cid}", group="g", title="t", run=fn, **kw)

    chosen = [mk("A", lambda c: skipped("not applicable here")),
              mk("B", lambda c: passed("ran"), needs_if_run=("A",))]
    assert statuses(run_checks(ctx(), chosen))["B"] is Status.PASS
    broken = [mk("A", lambda c: failed("no", "f")),
              mk("B", lambda c: passed("ran"), needs_if_run=("A",))]
    by = {c.id: r for c, r in run_checks(ctx(), broken)}
    assert by["B"].status is Status.SKIP and by["B"].summary == "skipped: A nA failed"
    chain = [mk("Z", lambda c: failed("no", "f")),
             mk("A", lambda c: passed("x"), needs=("Z",)),
             mk("B", lambda c: passed("ran"), needs_if_run=("A",))]
    by = {c.id: r for c, r in run_checks(ctx(), chain)}
    assert by["B"].status is Status.SKIP and by["B"].blocked_by == "A"


def test_not_applicable_is_said_before_a_skipped_prerequisite():
    checks = [make("A", lambda c: passed("x"), pre=(needs_target,)),
              make("B", lambda c: passed("x"), needs=("A",), pre=(needs_target,))]
    by = {c.id: r for c, r in run_checks(ctx(), checks)}
    assert "no remote host" in by["B"].summary


def _blank(node) -> bool:
    """A fix argument that is missing, or a string constant / f-string with no text."""
    import ast

    if node is None:
        return True
    if isinstance(node, ast.Constant):
        return not (isinstance(node.value, str) and node.value.strip())
    if isinstance(node, ast.JoinedStr):
        return all(isinstance(v, ast.Constant) and not str(v.value).strip() for v in node.values)
    return False  # a name or an expression: its value is not known here


def test_every_non_pass_result_a_check_builds_carries_a_fix():
    """CHECKS.md: every non-pass result carries a concrete fix. Results are built in many
    places; this reads every ``skipped/warned/failed(...)`` and non-pass ``Result(...)``
    call under checks/, mkdoctor/ and wizard/ and wants a fix that is not an empty string."""
    import ast
    from pathlib import Path

    missing = []
    root = Path(__file__).parent.parent
    for path in sorted(p for d in ("checks", "mkdoctor", "wizard") for p in (root / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", "") or getattr(node.func, "attr", "")
            keyword = next((k.value for k in node.keywords if k.arg == "fix"), None)
            if name in ("skipped", "warned", "failed"):
                fix = node.args[1] if len(node.args) >= 2 else keyword
            elif name == "Result":
                status = node.args[0] if node.args else None
                if getattr(status, "attr", "") == "PASS":
                    continue
                fix = node.args[3] if len(node.args) >= 4 else keyword
            else:
                continue
            if _blank(fix):
                missing.append(f"{path.name}:{node.lineno} {name}")
    assert missing == []


def test_the_fix_rule_is_not_vacuous():
    import ast

    def fix_of(src):
        return ast.parse(src).body[0].value.args[1]

    assert _blank(fix_of('skipped("r", "")')) and _blank(fix_of('skipped("r", "  ")'))
    assert _blank(fix_of('skipped("r", f"")')) and _blank(fix_of('skipped("r", None)'))
    assert not _blank(fix_of('skipped("r", "run x")')) and not _blank(fix_of('skipped("r", f"run {x}")'))


def test_a_broken_precondition_is_an_error_with_a_fix():
    def broken(c):
        raise KeyError("mode")

    (check, result), = run_checks(ctx(), [make("A", lambda c: passed("x"), pre=(broken,))])
    assert result.status is Status.ERROR
    assert result.summary == "the check itself broke: KeyError: 'mode'"
    assert result.fix.strip() and "bug in mkdoctor" in result.fix
    assert "Traceback" in result.traceback


def test_precondition_skips_carry_their_fix():
    checks = [make("A", lambda c: passed("x"), pre=(needs_target,)),
              make("B", lambda c: passed("x"), pre=(only_mode("direct"),))]
    by = {c.id: r for c, r in run_checks(ctx(mode="tunnel"), checks)}
    assert "--host" in by["A"].fix
    assert "--mode direct" in by["B"].fix


def test_overlapping_check_runs_beside_its_prerequisite_and_keeps_a_pass():
    started = {}

    def slow(c):
        started["A"] = time.monotonic()
        time.sleep(0.5)
        return passed("a ok")

    def b(c):
        started["B"] = time.monotonic()
        return passed("b ok")

    checks = [make("A", slow),
              Check(id="B", name="nB", group="g", title="t", run=b, needs=("A",), overlaps=("A",))]
    results = run_checks(ctx(), checks)
    assert statuses(results) == {"A": Status.PASS, "B": Status.PASS}
    assert started["B"] - started["A"] < 0.4  # did not wait for A


@pytest.mark.parametrize("kind", ["needs", "needs_if_run"])
def test_overlapping_check_is_skipped_after_the_fact_when_its_prerequisite_fails(kind):
    def slow_fail(c):
        time.sleep(0.3)
        return failed("a broke", "fix a")

    b = Check(id="B", name="nB", group="g", title="t", run=lambda c: failed("b broke too", "x"),
              overlaps=("A",), **{kind: ("A",)})
    results = run_checks(ctx(), [make("A", slow_fail), b])
    by = {c.id: r for c, r in results}
    assert by["B"].status is Status.SKIP and by["B"].summary == "skipped: A nA failed"
    assert by["B"].blocked_by == "A"


def test_overlapping_needs_if_run_keeps_the_result_when_the_prerequisite_chose_to_skip():
    b = Check(id="B", name="nB", group="g", title="t", run=lambda c: passed("b ok"),
              needs_if_run=("A",), overlaps=("A",))
    results = run_checks(ctx(), [make("A", lambda c: skipped("skipped: not here", "n/a")), b])
    assert statuses(results)["B"] is Status.PASS


class _CountingCondition(threading.Condition):
    """The engine's condition, counting the waits that ended by their timeout."""

    def __init__(self) -> None:
        super().__init__(threading.RLock())
        self.timed_out = 0

    def wait(self, timeout=None):  # noqa: ANN001
        woke = super().wait(timeout)
        if not woke:
            self.timed_out += 1
        return woke


def test_a_skip_decided_late_in_a_pass_readies_an_earlier_check_without_waiting():
    """Long-running checks are looked at first in each pass. One that depends on a check
    the same pass skips later (a precondition) must be decided in a further pass at once:
    no event would wake the engine for it, so it waited for its 0.5 s poll before."""
    import dataclasses

    checks = [
        make("A", lambda c: passed("never"), pre=(lambda c: "not here",)),
        dataclasses.replace(make("B", lambda c: passed("never"), needs=("A",)),
                            long_running=True),
    ]
    context = ctx()
    context.changed = _CountingCondition()
    results = run_checks(context, checks)
    assert statuses(results) == {"A": Status.SKIP, "B": Status.SKIP}
    assert [c.id for c, _ in results] == ["A", "B"]  # the report keeps the catalogue order
    assert context.changed.timed_out == 0


def test_long_running_checks_start_first_among_those_ready_together():
    import dataclasses

    checks = [make("A", lambda c: passed("a")),
              make("B", lambda c: passed("b")),
              dataclasses.replace(make("C", lambda c: passed("c")), long_running=True)]
    started: list[str] = []
    results = run_checks(ctx(), checks, on_start=lambda c: started.append(c.id))
    assert started == ["C", "A", "B"]
    assert [c.id for c, _ in results] == ["A", "B", "C"]
