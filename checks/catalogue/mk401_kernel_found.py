"""MK401 kernel-found: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK401",
    name="kernel-found",
    group="kernel",
    title="the kernel executable on the remote host, and its version",
    run=run,
    needs=('MK304',),
    after=(),
    preconditions=(needs_target,),
)
