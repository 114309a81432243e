"""MK102 public-address: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK102",
    name="public-address",
    group="network",
    title="the public IPv4 address from a what-is-my-IP service; offline gives skip, never a hang",
    run=run,
    needs=(),
    after=(),
)
