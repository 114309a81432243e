"""MK403 link-path: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK403",
    name="link-path",
    group="kernel",
    title="the chosen mode's network path works (reverse forward, or the remote host connecting back)",
    run=run,
    needs=('MK304',),
    after=('MK103', 'MK203', 'MK312'),
    preconditions=(needs_target,),
)
