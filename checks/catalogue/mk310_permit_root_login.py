"""MK310 permit-root-login: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK310",
    name="permit-root-login",
    group="server",
    title="the remote sshd's effective PermitRootLogin is no",
    run=run,
    needs=('MK304',),
    after=(),
    preconditions=(needs_target,),
)
