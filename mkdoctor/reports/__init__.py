"""Reports: the same results rendered as text, JSON, JUnit XML or Markdown.

Each format is a module with ``render(report, color=False, verbose=False) -> str``,
registered in :data:`FORMATS`. Results are always in catalogue order.

What a check reports may quote remote output (MK306 quotes what a startup file printed,
colour codes included): before any format sees it, every control character other than
newline and tab is written visibly (ESC as ``\\x1b``), so a report never drives the
terminal and the JUnit XML stays well-formed.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from mkdoctor.model import Check, Result, Status

FORMATS = {
    "text": "mkdoctor.reports.text",
    "json": "mkdoctor.reports.json_report",
    "junit": "mkdoctor.reports.junit",
    "markdown": "mkdoctor.reports.markdown",
}


@dataclass
class Report:
    """One run against one target (or none: the local checks only)."""

    version: str
    target: Optional[dict[str, Any]]
    results: list[tuple[Check, Result]]
    duration_s: float
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for _, result in self.results:
            counts[result.status.value] += 1
        return counts


# The reasons of results the engine makes itself (a check cut off by the deadline or an
# interrupt): the check's own hints are not about them.
ENGINE_REASONS = ("deadline", "interrupted")


def short_fix(fix: str, limit: int = 48) -> str:
    """A fix in a few words when there is no hint: its first line, cut at ``limit``."""
    first = (fix.strip().splitlines() or [""])[0].strip()
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def fix_hint(check: Check, result: Result) -> str:
    """The fix of a result in a few words, for a table of hosts: for a failure or a
    warning the check's hint for its reason (``Check.fix_hints``), else the fix's first
    line; "" when there is no fix (a pass)."""
    if not result.fix:
        return ""
    if (result.status in (Status.FAIL, Status.WARN)
            and result.facts.get("reason") not in ENGINE_REASONS):
        return check.hint(result) or short_fix(result.fix)
    return short_fix(result.fix)


# C0 and C1 controls but newline and tab, DEL, lone surrogates (undecodable bytes) and the
# two non-characters: none may reach a terminal, and none is allowed in XML 1.0.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def visible(text: str) -> str:
    """``text`` with each control character written as its escape (``\\x1b``)."""
    return _INVISIBLE.sub(lambda m: ascii(m.group())[1:-1], text)


def _visible_result(result: Result) -> Result:
    return dataclasses.replace(
        result, summary=visible(result.summary), details=[visible(d) for d in result.details],
        fix=visible(result.fix), commands=[visible(c) for c in result.commands],
        traceback=visible(result.traceback))


def _visible_report(report: Report) -> Report:
    from mkdoctor.firstcause import reconcile  # a fix leads with a more specific finding

    return dataclasses.replace(
        report, results=[(c, _visible_result(r)) for c, r in reconcile(report.results)],
        notes=[visible(n) for n in report.notes])


def render(fmt: str, reports: list[Report], color: bool = False, verbose: bool = False) -> str:
    module = importlib.import_module(FORMATS[fmt])
    return module.render([_visible_report(r) for r in reports], color=color, verbose=verbose)
