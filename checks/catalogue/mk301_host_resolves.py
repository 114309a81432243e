"""MK301 host-resolves: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, needs_target, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK301",
    name="host-resolves",
    group="server",
    title="the host name (after ssh -G, through ProxyJump when set) resolves",
    run=run,
    needs=('MK201',),
    after=(),
    preconditions=(needs_target,),
)
