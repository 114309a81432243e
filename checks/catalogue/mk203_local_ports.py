"""MK203 local-ports: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK203",
    name="local-ports",
    group="client",
    title="the two link ports are free on the laptop; if not, which process holds them",
    run=run,
    needs=(),
    after=('MK103',),
)
