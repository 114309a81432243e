"""The default report: one line per check, then what to fix (like ``flutter doctor``)."""

from __future__ import annotations

from mkdoctor.model import Check, Result, Status
from mkdoctor.reports import Report

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
    parts.append(f"{c['skip']} skipped")
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
        out.append(line(check, result, color, width))
        if verbose:
            for d in result.details:
                out.append(f"      {d}")
            for cmd in result.commands:
                first, *rest = cmd.splitlines() or [""]
                out.append(f"      $ {first}")
                out.extend(f"          {text}" for text in rest)  # a remote script
            if result.traceback:
                out.extend("      " + t for t in result.traceback.rstrip().splitlines())
    out.append("")
    out.append(summary_line(report))
    todo = [(c, r) for c, r in report.results if r.status is not Status.PASS]
    own = [(c, r) for c, r in todo if not r.blocked_by]
    if own:
        out += ["", paint("What to fix", "1", color)]
        for check, result in own:
            out.append("")
            out.append(f"{SYMBOLS[result.status]} {check.id} {check.name}: {result.summary}")
            if not verbose:
                for d in result.details[:6]:
                    out.append(f"    {d}")
                if len(result.details) > 6:
                    out.append(f"    … {len(result.details) - 6} more lines (-v shows all)")
            if result.fix:
                fix_lines = result.fix.splitlines()
                out.append(f"    fix:  {fix_lines[0]}")
                out.extend(f"          {f}" for f in fix_lines[1:])
            out.append(f"    docs: mkdoctor explain {check.id}")
    for note in report.notes:
        out += ["", note]
    return "\n".join(out) + "\n"


def render(reports: list[Report], color: bool = False, verbose: bool = False) -> str:
    return "\n".join(render_one(r, color, verbose) for r in reports)
