"""Markdown, for a CI job summary (e.g. ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

from mkdoctor.firstcause import untested
from mkdoctor.model import Status
from mkdoctor.reports import Report, fix_hint
from mkdoctor.reports.text import header, summary_line, worst

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


def hosts_table(reports: list[Report]) -> str:
    """One row per host: its worst status, its first failing check and that check's fix in
    a few words (CHECKS.md "Several hosts": Markdown a table of hosts; the whole fix is in
    the host's section)."""
    out = ["## Hosts", "", "| | Host | Pass | Warn | Fail | Skip | Not tested | First problem | Fix |",
           "|---|---|---|---|---|---|---|---|---|"]
    for report in reports:
        c = report.counts()
        first = next(((ch, r) for ch, r in report.results
                      if r.status in (Status.FAIL, Status.ERROR) and not r.blocked_by), None)
        host = ((report.target or {}).get("destination") or "local")
        gaps = untested(report.results)
        not_tested = ", ".join(f"`{ch.id}`" for ch, _ in gaps) or "0"
        status, _ = worst(report)  # the text table's: a skip a failure caused does not count
        if first is None and gaps:  # nothing failed, but not every link was tested
            first = gaps[0]
            status = Status.SKIP if status in (Status.PASS, Status.SKIP) else status
        problem = f"`{first[0].id}` {cell(first[1].summary)}" if first else ""
        fix = cell(fix_hint(*first)) if first else ""
        out.append(f"| {ICONS[status]} | {cell(host)} | {c['pass']} | {c['warn']} | "
                   f"{c['fail'] + c['error']} | {c['skip']} | {not_tested} | {problem} | {fix} |")
    return "\n".join(out) + "\n"


def render(reports: list[Report], color: bool = False, verbose: bool = False) -> str:
    parts = [render_one(r, verbose) for r in reports]
    if len(reports) > 1:
        parts.insert(0, hosts_table(reports))
    return "\n".join(parts)
