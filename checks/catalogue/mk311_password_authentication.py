"""MK311 password-authentication: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK311",
    name="password-authentication",
    group="server",
    title="warns when the remote sshd allows password logins and is reachable from the internet",
    run=run,
    needs=('MK304',),
    after=('MK103',),
    preconditions=(needs_target,),
)
