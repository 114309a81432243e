"""MK312 tcp-forwarding: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK312",
    name="tcp-forwarding",
    group="server",
    title="tunnel mode: the remote sshd allows the reverse forwards",
    run=run,
    needs=('MK304',),
    after=('MK103',),
    preconditions=(needs_target,),
)
