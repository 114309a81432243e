"""First cause first: what the end of a report leads with, and fixes that agree.

Three generic rules, for every format:

1. **The chain.** The links from the laptop to the kernel break in an order: the
   network (addresses, name, the SSH port), ssh (client, keys, host key, login, shell),
   the server's policy (root login, passwords, forwarding), the kernel (found, starts),
   then the link itself (ports, firewall, the path back, the written configuration). The
   first broken link — the first failed or broken check, in that order, that was not
   skipped because of another — is the cause to fix first: what comes after it is often
   its consequence. :data:`STAGE` places each check; a check it does not list is placed
   by its group.
2. **Not checked because you asked.** A check that was not run (``--only``/``--skip``)
   or that skipped because of a flag (``--offline``: the check sets the fact
   ``by_request``) needs no fix: it is listed apart, never under "What to fix".
3. **A fix never contradicts a more specific finding.** A check that has named the exact
   cause of a problem publishes it as a *finding*, ``facts["findings"] = [{"topic": T,
   "cause": "...", "fix": "..."}]``; a check whose fix is about the same topic declares
   ``facts["fix_topics"] = [T]``. :func:`reconcile` then makes that fix lead with the
   finding's (naming the check that found it) and keeps its own as the fallback. Topics
   are plain strings; today: ``inbound-link-ports`` (MK204 names the firewall rule that
   drops the link ports; MK403's direct-mode failure is about the same ports).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

from mkdoctor.model import Check, Result, Status

STAGES = ("network", "ssh", "server policy", "kernel", "link")

STAGE = {
    "MK101": "network", "MK102": "network", "MK103": "network", "MK301": "network",
    "MK302": "network",
    "MK201": "ssh", "MK202": "ssh", "MK303": "ssh", "MK304": "ssh", "MK305": "ssh",
    "MK306": "ssh",
    "MK205": "server policy", "MK310": "server policy", "MK311": "server policy",
    "MK312": "server policy",
    "MK401": "kernel", "MK402": "kernel", "MK601": "kernel", "MK602": "kernel",
    "MK603": "kernel",
    "MK203": "link", "MK204": "link", "MK403": "link", "MK404": "link", "MK501": "link",
    "MK604": "link", "MK605": "link",
}
_BY_GROUP = {"network": "network", "client": "ssh", "server": "server policy",
             "kernel": "kernel", "config": "link"}

BROKEN = (Status.FAIL, Status.ERROR)


def stage(check: Check) -> str:
    return STAGE.get(check.id) or _BY_GROUP.get(check.group, "link")


def by_request(result: Result) -> bool:
    """Skipped because of a flag the user gave (``--offline``): nothing to fix."""
    return result.status is Status.SKIP and bool(result.facts.get("by_request"))


def to_fix(results: Sequence[tuple[Check, Result]]) -> list[tuple[Check, Result]]:
    """What needs the user's attention: not passed, not skipped because of another check
    (listed once, under its cause), not skipped because the user asked."""
    return [(c, r) for c, r in results
            if r.status is not Status.PASS and not r.blocked_by and not by_request(r)]


def untested(results: Sequence[tuple[Check, Result]]) -> list[tuple[Check, Result]]:
    """What could not be tested: skipped by the check's own finding ("could not check")
    or by the run's deadline. Not a skip because the check does not apply here (a
    precondition), not one because a check it needs failed or was skipped (that one is
    reported, and counted), not one the user asked for (``--offline``)."""
    return [(c, r) for c, r in results if r.status is Status.SKIP
            and r.blocked_by in ("", "deadline") and not by_request(r)]


def asked(results: Sequence[tuple[Check, Result]]) -> list[tuple[Check, Result]]:
    return [(c, r) for c, r in results if by_request(r)]


def not_run(results: Sequence[tuple[Check, Result]]) -> list[Check]:
    """Checks of the catalogue this run did not include (``--only``/``--skip``)."""
    from mkdoctor.registry import all_checks

    ran = {c.id for c, _ in results}
    return [c for c in all_checks() if c.id not in ran]


def first_cause(results: Sequence[tuple[Check, Result]]) -> Optional[tuple[Check, Result]]:
    """The first broken link of the chain, or None when nothing failed or broke."""
    order = {c.id: i for i, (c, _) in enumerate(results)}
    broken = [(c, r) for c, r in to_fix(results) if r.status in BROKEN]
    if not broken:
        return None
    return min(broken, key=lambda cr: (STAGES.index(stage(cr[0])), order[cr[0].id]))


def reconcile(results: Sequence[tuple[Check, Result]]) -> list[tuple[Check, Result]]:
    """Results whose fixes lead with a more specific finding of another check (rule 3)."""
    findings: dict[str, tuple[Check, dict[str, Any]]] = {}
    for check, result in results:
        if result.status is Status.PASS:
            continue
        for finding in result.facts.get("findings") or ():
            if isinstance(finding, dict) and finding.get("topic") and finding.get("fix"):
                findings.setdefault(str(finding["topic"]), (check, finding))
    if not findings:
        return list(results)
    out = []
    for check, result in results:
        topics = result.facts.get("fix_topics") or ()
        lead = [findings[t] for t in topics if t in findings and findings[t][0].id != check.id]
        if result.status is Status.PASS or not lead or not result.fix:
            out.append((check, result))
            continue
        first = "; ".join(str(f["fix"]) for _, f in lead)
        if result.fix.startswith(first):
            out.append((check, result))
            continue
        found = [f"{other.id} {other.name} found the cause: {f.get('cause') or f['fix']}"
                 for other, f in lead]
        fix = f"{first} ({'; '.join(found)})\nif that is not enough: {result.fix}"
        out.append((check, dataclasses.replace(result, fix=fix)))
    return out
