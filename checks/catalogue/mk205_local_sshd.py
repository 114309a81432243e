"""MK205 local-sshd: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK205",
    name="local-sshd",
    group="client",
    title="if the laptop runs an SSH server: root login off and password login off when it is exposed",
    run=run,
    needs=(),
    after=('MK103',),
)
