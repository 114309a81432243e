"""MK305 authorized-keys: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK305",
    name="authorized-keys",
    group="server",
    title="our public key is in the remote AuthorizedKeysFile with safe modes and no options that break the setup",
    run=run,
    needs=('MK304',),
    after=('MK202',),
    preconditions=(needs_target,),
)
