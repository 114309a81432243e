"""Markdown, for a CI job summary (e.g. ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

from mkdoctor.model import Status
from mkdoctor.reports import Report
from mkdoctor.reports.text import header, summary_line

ICONS = {
    Status.PASS: "✅ pass",
    Status.WARN: "⚠️ warn",
    Status.FAIL: "❌ fail",
    Status.SKIP: "⏭️ skip",
    Status.ERROR: "💥 error",
}


def cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_one(report: Report, verbose: bool) -> str:
    out = [f"## {cell(header(report))}", "", "| | Check | Result |", "|---|---|---|"]
    for check, result in report.results:
        out.append(f"| {ICONS[result.status]} | `{check.id}` {check.name} | {cell(result.summary)} |")
    out += ["", f"**{summary_line(report)}**"]
    from mkdoctor.firstcause import to_fix  # --offline skips and the like need no fix

    todo = to_fix(report.results)
    if todo:
        out += ["", "### What to fix"]
        for check, result in todo:
            out += ["", f"#### {ICONS[result.status]} `{check.id}` {check.name}", "", cell(result.summary)]
            if result.details:
                out += ["", "```", *result.details, "```"]
            if result.fix:
                out += ["", "Fix:", "", "```", result.fix, "```"]
            out += ["", f"[Documentation]({check.docs})"]
    return "\n".join(out) + "\n"


def render(reports: list[Report], color: bool = False, verbose: bool = False) -> str:
    return "\n".join(render_one(r, verbose) for r in reports)
