"""MK303 host-key-known: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK303",
    name="host-key-known",
    group="server",
    title="the server's host key is in known_hosts and matches; a changed key fails loudly",
    run=run,
    needs=('MK302',),
    after=(),
    preconditions=(needs_target,),
)
