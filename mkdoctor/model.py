"""The check model: what a check is and what it returns.

A check is one small module in :mod:`mkdoctor.checks` that defines ``CHECK``, a
:class:`Check`. The engine only ever sees this interface: it knows nothing about any
particular check. Results are plain data so that every report can render them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    from mkdoctor.context import Context

# Each check's page, relative to the project; `mkdoctor explain ID` prints it.
DOCS_BASE = "docs/checks/"


class Status(str, enum.Enum):
    """Outcome of one check (see shared/CHECKS.md, "Statuses")."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"

    @property
    def ok(self) -> bool:
        """True when a check that depends on this one may run (pass or warn)."""
        return self in (Status.PASS, Status.WARN)


@dataclass
class Result:
    """What a check found.

    ``summary`` is one line. Every non-pass result carries a ``fix`` (a command to run or
    a line to change). ``facts`` are values later checks and the wizard may use (for
    example MK103 publishes ``recommended_mode``); they are not printed.
    """

    status: Status
    summary: str
    details: list[str] = field(default_factory=list)
    fix: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    # Filled in by the engine:
    commands: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    traceback: str = ""
    # Set by the engine when it skipped the check without running it: the prerequisite's
    # ID, "precondition" (not applicable) or "deadline". Reports list such skips once,
    # under their cause, not again under "What to fix".
    blocked_by: str = ""


def passed(summary: str, details: Optional[list[str]] = None, **facts: Any) -> Result:
    return Result(Status.PASS, summary, list(details or []), "", dict(facts))


def warned(summary: str, fix: str, details: Optional[list[str]] = None, **facts: Any) -> Result:
    return Result(Status.WARN, summary, list(details or []), fix, dict(facts))


def failed(summary: str, fix: str, details: Optional[list[str]] = None, **facts: Any) -> Result:
    return Result(Status.FAIL, summary, list(details or []), fix, dict(facts))


def skipped(reason: str, fix: str = "", details: Optional[list[str]] = None, **facts: Any) -> Result:
    """"Could not check" or "not applicable": never a pass and never a fail."""
    return Result(Status.SKIP, reason, list(details or []), fix, dict(facts))


def _describe(status: Status) -> str:
    return {Status.FAIL: "failed", Status.SKIP: "was skipped", Status.ERROR: "broke"}.get(
        status, status.value)


def blocked_skip(dep_id: str, dep_name: str, dep_result: Result) -> Result:
    """The skip of a check whose prerequisite ``dep_id`` did not pass (the engine's, for a
    declared ``needs``; a check's own, for a prerequisite it waits for only sometimes)."""
    return Result(Status.SKIP, f"skipped: {dep_id} {dep_name} {_describe(dep_result.status)}",
                  fix=f"fix {dep_id} {dep_name} first", blocked_by=dep_id)


# A precondition returns None when the check applies, else the reason to skip it, or a
# (reason, fix) pair when something can be done to make it apply.
Precondition = Callable[["Context"], Union[None, str, tuple[str, str]]]


@dataclass(frozen=True)
class Check:
    """One entry of the catalogue.

    - ``needs``: check IDs that must pass (or warn) first; if one fails, errors or is
      skipped, this check is skipped naming it.
    - ``needs_if_run``: check IDs that block this check only when they ran and failed or
      broke, or were themselves blocked; a skip they chose (not applicable here, could
      not check) does not block. For a check that is the real test of a path its
      prerequisites cannot see (MK304 logs in through a ProxyJump that MK303 skips).
    - ``after``: check IDs whose facts this check reads when they are available; it
      waits for them but runs whatever their status.
    - ``preconditions``: generic applicability tests (a remote host is given, a mode is
      selected...), each returning a skip reason or None.
    - ``overlaps``: prerequisites (in ``needs`` or ``needs_if_run``) the check runs at the
      same time as; its result is replaced by the skip naming the first that blocks it.
    - ``per_host``: the check runs without a host but reads it when there is one; every
      other check without ``needs_target`` (and not depending on one that has it) checks
      this computer only and runs once per run when several hosts are checked.
    - ``reads``: run inputs this check (or one of its preconditions) reads, such as
      ``"mode"``: it waits for every selected check that ``decides`` one of them.
    - ``long_running``: the check takes seconds (a kernel start): started before the quick
      checks that are ready at the same moment.
    - ``fix_hints``: the fix in a few words per failure ``reason`` ("" the default), for
      the one line per host that ends a run of several hosts (:meth:`hint`).
    - ``decides``: (input, fact) pairs: this check decides a run input that no flag gave,
      and publishes its value as that fact (MK103 decides the mode: ``recommended_mode``).
      :meth:`Context.input <mkdoctor.context.Context.input>` reads it; the engine knows
      no particular check.
    """

    id: str
    name: str
    group: str
    title: str
    run: Callable[["Context"], Result]
    needs: tuple[str, ...] = ()
    needs_if_run: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    preconditions: tuple[Precondition, ...] = ()
    # Runs without a remote host but reads it when one is given (MK202: the identity ssh
    # uses for that host): with several hosts it runs once per host, not once per run.
    per_host: bool = False
    # Prerequisites (of needs or needs_if_run) the check does not wait for: it runs at the
    # same time as them, and when one of them turns out to block it, the engine replaces
    # its result with the skip it would have had. Only for a check that is harmless when
    # run early and whose early run leaves nothing behind (MK304 logs in while MK303
    # judges the host key, refusing any key known_hosts lacks).
    overlaps: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    decides: tuple[tuple[str, str], ...] = ()
    # Takes seconds, not round trips (a kernel start, an allocation): among the checks
    # that become ready at the same moment, the engine starts it first, so that its
    # thread and programs are not queued behind quick ones (a run's end waits for it).
    long_running: bool = False
    # The fix in a few words, for a table of hosts (the fleet's last lines): (reason, words)
    # pairs, the failure's ``reason`` fact choosing; the pair with reason "" is the default.
    fix_hints: tuple[tuple[str, str], ...] = ()

    def hint(self, result: "Result") -> str:
        """The fix of ``result`` in a few words ("" when the check has none for it)."""
        hints = dict(self.fix_hints)
        return hints.get(str(result.facts.get("reason") or ""), hints.get("", ""))

    @property
    def docs(self) -> str:
        return f"{DOCS_BASE}{self.id}.md"

    @property
    def inputs_read(self) -> tuple[str, ...]:
        """``reads`` and what its preconditions declare they read (only_mode: the mode)."""
        more = [i for pre in self.preconditions for i in getattr(pre, "reads", ())]
        return tuple(dict.fromkeys((*self.reads, *more)))


# --- generic preconditions shared by checks -------------------------------------------


def needs_target(ctx: "Context") -> Optional[tuple[str, str]]:
    """Skip when no remote host was given."""
    if ctx.target is None:
        return ("no remote host given (add --host USER@HOST or --profile NAME)",
                "mkdoctor --host USER@HOST, or mkdoctor setup")
    return None


def only_mode(mode: str) -> Precondition:
    """Skip unless the run's connection mode is ``mode`` ("direct" or "tunnel")."""

    def pre(ctx: "Context") -> Optional[tuple[str, str]]:
        if ctx.mode != mode:
            return (f"not applicable in {ctx.mode} mode (only in {mode} mode)",
                    f"nothing to do in {ctx.mode} mode; --mode {mode} checks it")
        return None

    pre.__name__ = f"only_{mode}_mode"
    pre.reads = ("mode",)  # type: ignore[attr-defined]  # the engine waits for the mode
    return pre

