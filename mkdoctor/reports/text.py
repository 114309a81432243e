"""The default report: one line per check, then what to fix (like ``flutter doctor``)."""

from __future__ import annotations

from typing import Optional

from mkdoctor import firstcause
from mkdoctor.model import Check, Result, Status
from mkdoctor.reports import Report, fix_hint

SYMBOLS = {
    Status.PASS: "✓",
    Status.WARN: "!",
    Status.FAIL: "✗",
    Status.SKIP: "-",
    Status.ERROR: "✗",
}
COLORS = {
    Status.PASS: "32",
    Status.WARN: "33",
    Status.FAIL: "31",
    Status.SKIP: "2",
    Status.ERROR: "35",
}


def paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def line(check: Check, result: Result, color: bool = False, width: int = 24) -> str:
    symbol = paint(SYMBOLS[result.status], COLORS[result.status], color)
    label = f"{check.id} {check.name}"
    return f"{symbol} {label:<{width}} {result.summary}"


def summary_line(report: Report) -> str:
    c = report.counts()
    parts = [f"{c['pass']} passed"]
    if c["warn"]:
        parts.append(f"{c['warn']} warning{'s' if c['warn'] != 1 else ''}")
    parts.append(f"{c['fail']} failed")
    if c["error"]:
        parts.append(f"{c['error']} broke")
    n = len(firstcause.untested(report.results))
    parts.append(f"{c['skip']} skipped" + (f" ({n} could not be tested)" if n else ""))
    return ", ".join(parts) + f" in {report.duration_s:.1f} s"


def header(report: Report) -> str:
    t = report.target or {}
    if t.get("destination"):
        where = f"{t['destination']} ({t['mode']} mode, link ports {t['link_ports'][0]},{t['link_ports'][1]})"
    else:
        where = f"this computer only, no remote host ({t.get('mode', 'tunnel')} mode)"
    return f"mkdoctor {report.version}: {where}"


def render_one(report: Report, color: bool, verbose: bool) -> str:
    out = [header(report), ""]
    width = max((len(f"{c.id} {c.name}") for c, _ in report.results), default=20)
    for check, result in report.results:
        out += check_entry(check, result, color, width, verbose)
    out += tail_lines(report, color, verbose)
    return "\n".join(out) + "\n"


def check_entry(check: Check, result: Result, color: bool, width: int, verbose: bool) -> list[str]:
    """One check's line (and with ``verbose`` its details and commands): what the live
    output prints the moment this result and all before it are known."""
    out = [line(check, result, color, width)]
    if verbose:
        for d in result.details:
            out.append(f"      {d}")
        for cmd in result.commands:
            first, *rest = cmd.splitlines() or [""]
            out.append(f"      $ {first}")
            out.extend(f"          {text}" for text in rest)  # a remote script
        if result.traceback:
            out.extend("      " + t for t in result.traceback.rstrip().splitlines())
    return out


def tail_lines(report: Report, color: bool, verbose: bool) -> list[str]:
    """What follows the check lines: the counts, what to fix, the notes."""
    out = [""]
    out.append(summary_line(report))
    out += end_of_report(report, color, verbose)  # the notes included, before the first cause
    return out


# --------------------------------------------------------------------------- several hosts

RANK = {Status.ERROR: 4, Status.FAIL: 3, Status.WARN: 2, Status.PASS: 1, Status.SKIP: 0}


def worst(report: Report) -> tuple[Status, Optional[tuple[Check, Result]]]:
    """A host's worst status and the first check (catalogue order) that has it; a skip
    counts only when nothing else ran. Skips caused by another check are not "first"."""
    own = [(c, r) for c, r in report.results if not r.blocked_by or r.status is not Status.SKIP]
    if not own:
        return Status.SKIP, None
    status = max((r.status for _, r in own), key=RANK.__getitem__)
    if status in (Status.PASS, Status.SKIP):
        return status, None
    return status, next((c, r) for c, r in own if r.status is status
                        or (status is Status.FAIL and r.status is Status.ERROR))


def fleet_table(reports: list[Report], color: bool = False) -> list[str]:
    """The end of a several-host report: one line per host, in the order given: its worst
    status, the first check with it, and that check's fix in a few words (its hint; the
    whole fix is in the host's part above). A host where nothing failed but a check could
    not be tested (:func:`mkdoctor.firstcause.untested`) is not called healthy: its line
    names that check; any other untested check is listed after the fix."""
    names = [(r.target or {}).get("destination") or "this computer" for r in reports]
    rows = []
    for name, report in zip(names, reports):
        status, first = worst(report)
        gaps = firstcause.untested(report.results)
        if first is None and gaps:  # nothing failed, but not every link was tested
            status, first = Status.SKIP, gaps[0]
        if first is None:
            what = "every check passed" if status is Status.PASS else "every check was skipped"
            rows.append((status, name, what, ""))
            continue
        check, result = first
        hint = fix_hint(check, result)
        label = f"{check.id} {check.name}" + (" not tested" if result.status is Status.SKIP else "")
        more = [c.id for c, _ in gaps if c is not check]
        rest = (f"  fix: {hint}" if hint else "") + (
            f"  (not tested: {', '.join(more)})" if more else "")
        rows.append((status, name, label, rest))
    width = max(len(n) for n in names)
    label_width = max((len(label) for _, _, label, rest in rows if rest), default=0)
    out = ["", paint(f"{len(reports)} hosts", "1", color)]
    for status, name, label, rest in rows:
        symbol = paint(SYMBOLS[status], COLORS[status], color)
        out.append(f"{symbol} {name:<{width}}  {label:<{label_width}}{rest}".rstrip())
    return out


# ----------------------------------------------------- the end: what to fix, first cause


def _fix_lines(fix: str) -> list[str]:
    fix_lines = fix.splitlines()
    return [f"    fix:  {fix_lines[0]}"] + [f"          {f}" for f in fix_lines[1:]]


def what_to_fix(report: Report, color: bool, verbose: bool) -> list[str]:
    """Every result that needs the user: failures, warnings, could-not-check skips."""
    own = firstcause.to_fix(report.results)
    if not own:
        return []
    out = ["", paint("What to fix", "1", color)]
    for check, result in own:
        out.append("")
        out.append(f"{SYMBOLS[result.status]} {check.id} {check.name}: {result.summary}")
        if not verbose:
            for d in result.details[:6]:
                out.append(f"    {d}")
            if len(result.details) > 6:
                out.append(f"    … {len(result.details) - 6} more lines (-v shows all)")
        if result.fix:
            out += _fix_lines(result.fix)
        out.append(f"    docs: mkdoctor explain {check.id}")
    return out


def not_checked(report: Report) -> list[str]:
    """What was not checked because the user asked (--offline, --only, --skip)."""
    asked = firstcause.asked(report.results)
    left_out = firstcause.not_run(report.results)
    if not asked and not left_out:
        return []
    out = ["", "Not checked, as you asked (nothing to fix):"]
    for check, result in asked:
        out.append(f"  - {check.id} {check.name}: {result.summary}")
    if left_out:
        out.append(f"  - not run (--only/--skip): {', '.join(c.id for c in left_out)}")
    return out


def first_cause(report: Report, color: bool) -> list[str]:
    """The last block: the first broken link of the chain and its fix."""
    found = firstcause.first_cause(report.results)
    if found is None:
        return []
    check, result = found
    broken = sum(1 for _, r in report.results if r.status in firstcause.BROKEN)
    out = ["", paint(f"Fix first ({firstcause.stage(check)}): {check.id} {check.name}", "1", color)
           + f": {result.summary}"]
    if result.fix:
        out += _fix_lines(result.fix)
    if broken > 1:
        out.append(f"    then re-run mkdoctor: {broken - 1} other failure"
                   f"{'s' if broken > 2 else ''} may follow from this one")
    return out


def end_of_report(report: Report, color: bool, verbose: bool) -> list[str]:
    """What to fix, what was not checked as asked, the run's notes, and last the first cause."""
    notes: list[str] = []
    for note in report.notes:
        notes += ["", note]
    return (what_to_fix(report, color, verbose) + not_checked(report) + notes
            + first_cause(report, color))


def render(reports: list[Report], color: bool = False, verbose: bool = False) -> str:
    text = "\n".join(render_one(r, color, verbose) for r in reports)
    if len(reports) > 1:
        text += "\n".join(fleet_table(reports, color)) + "\n"
    return text
