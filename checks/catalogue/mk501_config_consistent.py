"""MK501 config-consistent: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK501",
    name="config-consistent",
    group="config",
    title="the written front-end and ssh configuration agree with the profile and avoid the known traps",
    run=run,
    needs=(),
    after=(),
)
