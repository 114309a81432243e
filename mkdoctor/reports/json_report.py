"""The JSON report (schema in shared/CHECKS.md). Several targets: ``{"reports": [...],
"summary": {totals}}``."""

from __future__ import annotations

import json
from typing import Any

from mkdoctor.firstcause import untested
from mkdoctor.reports import Report, fix_hint

SCHEMA_VERSION = 1


def as_dict(report: Report, verbose: bool = False) -> dict[str, Any]:
    counts = report.counts()
    checks = []
    for check, result in report.results:
        item: dict[str, Any] = {
            "id": check.id,
            "name": check.name,
            "group": check.group,
            "status": result.status.value,
            "summary": result.summary,
            "details": list(result.details),
            "fix": result.fix,
            # the fix in a few words (what the table of hosts shows); "" for a pass
            "fix_hint": fix_hint(check, result),
            "docs": check.docs,
            "duration_s": result.duration_s,
        }
        if verbose:
            item["commands"] = list(result.commands)
            if result.traceback:
                item["traceback"] = result.traceback
        checks.append(item)
    return {
        "tool": "mkdoctor",
        "version": report.version,
        "schema_version": SCHEMA_VERSION,
        "target": report.target,
        "duration_s": round(report.duration_s, 3),
        "summary": {**{k: counts[k] for k in ("pass", "warn", "fail", "skip", "error")},
                    # of the skips, those that could not be tested (firstcause.untested)
                    "untested": len(untested(report.results))},
        "checks": checks,
    }


def render(reports: list[Report], color: bool = False, verbose: bool = False) -> str:
    if len(reports) == 1:
        data: Any = as_dict(reports[0], verbose)
    else:
        each = [as_dict(r, verbose) for r in reports]
        totals = {k: sum(r["summary"][k] for r in each)
                  for k in ("pass", "warn", "fail", "skip", "error", "untested")}
        data = {
            "tool": "mkdoctor",
            "version": reports[0].version if reports else "",
            "schema_version": SCHEMA_VERSION,
            "reports": each,
            # CHECKS.md "Several hosts": totals over all hosts, and how many hosts
            "summary": {**totals, "hosts": len(each),
                        "hosts_failed": sum(1 for r in each
                                            if r["summary"]["fail"] or r["summary"]["error"])},
        }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
