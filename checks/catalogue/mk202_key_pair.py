"""MK202 key-pair: STUB - to be implemented (see the issue)."""

from __future__ import annotations

from checks.model import Check, Result, skipped


def run(ctx) -> Result:
    return skipped("skipped: not implemented yet")


CHECK = Check(
    id="MK202",
    name="key-pair",
    group="client",
    title="the identity ssh will use exists, mode 0600, public half matches, type and size accepted, passphrase key in the agent",
    run=run,
    needs=('MK201',),
    after=(),
)
