"""MK204 local-firewall: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK204",
    name="local-firewall",
    group="client",
    title="direct mode: what the laptop's firewall says about the link ports",
    run=run,
    needs=(),
    after=('MK103',),
)
