"""Reports: the same results rendered as text, JSON, JUnit XML or Markdown.

Each format is a module with ``render(report, color=False, verbose=False) -> str``,
registered in :data:`FORMATS`. Results are always in catalogue order.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Optional

from checks.model import Check, Result, Status

FORMATS = {
    "text": "checks.reports.text",
    "json": "checks.reports.json_report",
    "junit": "checks.reports.junit",
    "markdown": "checks.reports.markdown",
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


def render(fmt: str, reports: list[Report], color: bool = False, verbose: bool = False) -> str:
    module = importlib.import_module(FORMATS[fmt])
    return module.render(reports, color=color, verbose=verbose)
