"""The connection mode is a declared run input: a check that reads it waits for the
check that decides it (generically: ``Check.reads`` / ``Check.decides``; the engine
knows no particular check). Before, MK305 read the mode without waiting for MK103, so
a slow public-address lookup (MK102 -> MK103) changed its verdict.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

from mkdoctor.context import Context
from mkdoctor.engine import run_checks
from mkdoctor.model import Check, only_mode, passed
from mkdoctor.options import Options
from mkdoctor.registry import all_checks

ROOT = Path(__file__).resolve().parent.parent


def decider(delay: float) -> Check:
    def run(ctx):
        time.sleep(delay)  # a slow lookup decides it
        return passed("decided", verdict="direct")

    return Check("MKX01", "decider", "network", "t", run, decides=(("mode", "verdict"),))


def reader(declared: bool, seen: list) -> Check:
    def run(ctx):
        seen.append(ctx.mode)
        return passed(ctx.mode)

    return Check("MKX02", "reader", "remote", "t", run, reads=("mode",) if declared else ())


def test_a_reader_waits_for_the_slow_decider():
    seen: list = []
    run_checks(Context(Options()), [decider(0.4), reader(True, seen)])
    assert seen == ["direct"]


def test_without_the_declaration_the_reader_races_the_decider():
    """The fault the declaration removes: undeclared, the reader runs at once and sees
    the default."""
    seen: list = []
    run_checks(Context(Options()), [decider(0.4), reader(False, seen)])
    assert seen == ["tunnel"]


def test_the_mode_flag_wins_and_a_precondition_on_the_mode_waits_too():
    seen: list = []
    run_checks(Context(Options(mode="tunnel")), [decider(0.2), reader(True, seen)])
    assert seen == ["tunnel"]
    ran: list = []
    pre_reader = Check("MKX03", "direct-only", "local", "t", lambda c: ran.append(1) or passed("x"),
                       preconditions=(only_mode("direct"),))
    out = dict((c.id, r) for c, r in run_checks(Context(Options()), [decider(0.3), pre_reader]))
    assert out["MKX03"].status.value == "pass" and ran == [1]


def test_every_check_that_reads_the_mode_declares_it():
    """Static: a check module that reads ``ctx.mode`` declares ``reads=("mode",)`` (or an
    only_mode precondition); MK103 decides it."""
    by_module = {c.run.__module__: c for c in all_checks()}
    for path in sorted((ROOT / "checks").glob("mk*.py")):
        tree = ast.parse(path.read_text())
        reads_mode = any(isinstance(n, ast.Attribute) and n.attr == "mode"
                         and isinstance(n.value, ast.Name) and n.value.id == "ctx"
                         for n in ast.walk(tree))
        check = by_module[f"mkdoctor.checks.{path.stem}"]
        if reads_mode:
            assert "mode" in check.inputs_read, f"{check.id} reads ctx.mode undeclared"
    assert ("mode", "recommended_mode") in next(c for c in all_checks() if c.id == "MK103").decides
