"""MK306 clean-shell: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK306",
    name="clean-shell",
    group="server",
    title="a non-interactive remote shell prints nothing",
    run=run,
    needs=('MK304',),
    after=(),
    preconditions=(needs_target,),
)
