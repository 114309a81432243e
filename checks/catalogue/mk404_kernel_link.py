"""MK404 kernel-link: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK404",
    name="kernel-link",
    group="kernel",
    title="the exact launch command of the configuration starts the kernel and it connects to both link ports",
    run=run,
    needs=('MK402', 'MK403'),
    after=(),
    preconditions=(needs_target,),
)
