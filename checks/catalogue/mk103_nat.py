"""MK103 nat: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK103",
    name="nat",
    group="network",
    title="whether the laptop is behind NAT (or carrier-grade NAT); recommends the mode",
    run=run,
    needs=(),
    after=('MK101', 'MK102'),
)
