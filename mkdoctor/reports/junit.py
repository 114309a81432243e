"""JUnit XML: one ``<testsuite>`` per target, one ``<testcase>`` per check.

classname is the check's group, name is "MKnnn name"; fail gives ``<failure>``, error
``<error>``, skip ``<skipped>``; a warning passes with its text in ``<system-out>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mkdoctor.model import Status
from mkdoctor.reports import Report


def _text(result) -> str:
    lines = [result.summary, *result.details]
    if result.fix:
        lines.append(f"fix: {result.fix}")
    return "\n".join(lines)


def render(reports: list[Report], color: bool = False, verbose: bool = False) -> str:
    root = ET.Element("testsuites", name="mkdoctor")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    for report in reports:
        c = report.counts()
        name = "mkdoctor " + ((report.target or {}).get("destination") or "local")
        suite = ET.SubElement(
            root, "testsuite", name=name, tests=str(len(report.results)),
            failures=str(c["fail"]), errors=str(c["error"]), skipped=str(c["skip"]),
            time=f"{report.duration_s:.3f}",
        )
        totals["tests"] += len(report.results)
        totals["failures"] += c["fail"]
        totals["errors"] += c["error"]
        totals["skipped"] += c["skip"]
        totals["time"] += report.duration_s
        for check, result in report.results:
            case = ET.SubElement(
                suite, "testcase", classname=check.group, name=f"{check.id} {check.name}",
                time=f"{result.duration_s:.3f}",
            )
            if result.status is Status.FAIL:
                ET.SubElement(case, "failure", message=result.summary, type="fail").text = _text(result)
            elif result.status is Status.ERROR:
                el = ET.SubElement(case, "error", message=result.summary, type="error")
                el.text = _text(result) + ("\n" + result.traceback if verbose and result.traceback else "")
            elif result.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=result.summary)
            elif result.status is Status.WARN:
                ET.SubElement(case, "system-out").text = "warning: " + _text(result)
    for key, value in totals.items():
        root.set(key, f"{value:.3f}" if key == "time" else str(value))
    ET.indent(root) if hasattr(ET, "indent") else None
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
