"""MK402 kernel-starts: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK402",
    name="kernel-starts",
    group="kernel",
    title="the kernel starts and evaluates an expression within the timeout; licence problems recognised",
    run=run,
    needs=('MK401',),
    after=(),
    preconditions=(needs_target,),
)
