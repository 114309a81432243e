"""MK101 local-addresses: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK101",
    name="local-addresses",
    group="network",
    title="the laptop's interfaces and addresses, default route and gateway; VPN interfaces named",
    run=run,
    needs=(),
    after=(),
)
