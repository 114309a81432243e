"""MK601 scheduler-found: the login node has Slurm's commands and the partition is usable.

Cluster runs only (``--scheduler slurm`` or a cluster profile). Over the run's SSH
connection to the login node: ``command -v`` for ``sinfo``, ``srun``, ``squeue`` and
``scancel`` (the launch command and the other MK6xx checks use them, from a
non-interactive shell: a PATH set only for interactive shells, or by ``module load``
in them, is not there); then ``scontrol show partition NAME --oneline`` (or, with no
``--partition``, the default partition: ``Default=YES``): it must exist, be ``UP``, and
accept this user (``AllowGroups``/``DenyGroups`` are not in the way; checked against
``id -Gn``) and account (``AllowAccounts``/``DenyAccounts``, when ``--account`` is given).
Slurm facts: slurm.schedmd.com/scontrol.html, slurm.conf.html (PartitionName options).

Facts: ``partition`` (the partition the allocation uses), ``max_time``, ``partitions``,
``partition_notes`` (per partition: why it takes no job of this user, "no: ...", or its
time limit; setup's question offers only those that take one).
"""

from __future__ import annotations

import shlex

from mkdoctor.cluster import SLURM_COMMANDS, only_cluster
from mkdoctor.kernel import ensure_login
from mkdoctor.model import Check, Result, failed, needs_target, passed

SCRIPT = """\
for c in {cmds}; do command -v "$c" >/dev/null 2>&1 && echo "MKD-HAVE $c $(command -v "$c")" || echo "MKD-MISSING $c"; done
echo "MKD-GROUPS $(id -Gn 2>/dev/null)"
echo "MKD-USER $(id -un 2>/dev/null)"
command -v scontrol >/dev/null 2>&1 && scontrol --all show partition --oneline 2>&1 | sed 's/^/MKD-PART /'
command -v sinfo >/dev/null 2>&1 && sinfo -V 2>&1 | sed 's/^/MKD-VERSION /'
"""


def parse_partitions(lines: list[str]) -> dict[str, dict[str, str]]:
    """``scontrol show partition --oneline`` lines -> name -> {key: value}."""
    out: dict[str, dict[str, str]] = {}
    for line in lines:
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if "PartitionName" in fields:
            out[fields["PartitionName"]] = fields
    return out


def _listed(value: str) -> list[str]:
    return [] if value in ("", "ALL", "(null)") else value.split(",")


def run(ctx) -> Result:
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    script = SCRIPT.format(cmds=" ".join(SLURM_COMMANDS + ("scontrol",)))
    done = ctx.ssh.run(script, ctx.step_timeout(ctx.options.timeout * 2))
    lines = done.stdout.splitlines()
    def tagged(tag: str) -> list[str]:
        return [ln[len(tag) + 1:] for ln in lines if ln.startswith(tag + " ")]
    missing = [m.strip() for m in tagged("MKD-MISSING")]
    needed_missing = [m for m in missing if m in SLURM_COMMANDS]
    host = ctx.target.display
    details = [f"found: {h}" for h in tagged("MKD-HAVE")] + [v for v in tagged("MKD-VERSION")]
    if needed_missing:
        return failed(
            f"the login node's non-interactive shell has no {', '.join(needed_missing)} "
            "(Slurm's commands)",
            f"find them in an interactive login (ssh {host} 'bash -lc \"command -v srun\"'); "
            "if a 'module load slurm' provides them, put that (or their directory in PATH) "
            "in ~/.bashrc before its interactive-only part, or ask the cluster's admins "
            "where Slurm's commands are", details, reason="no-commands", missing=needed_missing)
    parts = parse_partitions(tagged("MKD-PART"))
    if not parts:
        return failed("scontrol shows no partition (is slurmctld reachable from the login node?)",
                      f"run ssh {host} sinfo and read its message; ask the admins if it fails",
                      details + [f"  {ln}" for ln in tagged("MKD-PART")[-4:]], reason="no-partitions")
    groups = set((tagged("MKD-GROUPS") or [""])[0].split())
    refusals = {name: refusal(name, f, groups, ctx.options.account, sorted(parts))
                for name, f in parts.items()}
    notes = {}  # why a partition takes no job of this user, or how long a job may run
    for name, f in sorted(parts.items()):
        r = refusals[name]
        notes[name] = ("no: " + r[0]) if r else (
            f"jobs up to {f['MaxTime']}" if f.get("MaxTime", "UNLIMITED") not in ("UNLIMITED", "INFINITE") else "")
    listing = {"partitions": sorted(parts), "partition_notes": notes}
    wanted = ctx.options.partition
    if not wanted:
        defaults = [n for n, f in parts.items() if f.get("Default") == "YES"]
        if not defaults:
            return failed("no --partition given and the cluster has no default partition",
                          f"give one of: {', '.join(sorted(parts))} with --partition NAME",
                          details, reason="no-default", **listing)
        wanted = defaults[0]
    info = parts.get(wanted)
    if info is None:
        return failed(f"there is no partition {wanted!r} on this cluster",
                      f"use one of: {', '.join(sorted(parts))} (--partition NAME)",
                      details, reason="no-such-partition", **listing)
    details.append("partition: " + " ".join(f"{k}={info[k]}" for k in
                                              ("PartitionName", "State", "MaxTime", "TotalNodes",
                                               "AllowGroups", "AllowAccounts", "Default")
                                              if k in info))
    refused = refusals[wanted]
    if refused:
        summary, fix, reason = refused
        return failed(summary, fix, details, reason=reason, partition=wanted, **listing)
    how = "given" if ctx.options.partition else "the default"
    return passed(f"Slurm's commands are there and the partition {wanted} ({how}) is up and "
                  "accepts you", details, partition=wanted, max_time=info.get("MaxTime", ""),
                  **listing)


def refusal(name: str, info: dict[str, str], groups: set[str], account: str | None,
            every: list[str]) -> tuple[str, str, str] | None:
    """Why the partition ``name`` takes no job of this user: (summary, fix, reason), or
    None. ``groups``: the user's groups on the login node; ``every``: all partitions."""
    state = info.get("State", "")
    if state != "UP":
        return (f"the partition {name} is {state or 'not up'}",
                f"use another partition (--partition; the cluster has {', '.join(every)}) "
                "or ask the admins when it comes back", "partition-state")
    allow = _listed(info.get("AllowGroups", "ALL"))
    if allow and not groups & set(allow):
        return (f"the partition {name} admits only the groups {', '.join(allow)}; "
                f"you are in {', '.join(sorted(groups)) or 'none'}",
                f"use another partition (--partition) or ask the admins to add you to "
                f"{allow[0]}", "not-allowed")
    deny = set(_listed(info.get("DenyGroups", "")))
    if deny & groups:
        return (f"the partition {name} denies your group {sorted(deny & groups)[0]}",
                "use another partition (--partition)", "denied")
    accounts = _listed(info.get("AllowAccounts", "ALL"))
    if account and accounts and account not in accounts:
        return (f"the partition {name} accepts only the accounts {', '.join(accounts)}",
                f"use --account {shlex.quote(accounts[0])} or another partition", "account")
    if account and account in _listed(info.get("DenyAccounts", "")):
        return (f"the partition {name} denies the account {account}",
                "use another --account or partition", "account")
    return None


CHECK = Check(
    id="MK601",
    name="scheduler-found",
    group="cluster",
    title="the login node has the scheduler's commands and the partition is up and accepts this user/account",
    run=run,
    needs=("MK304",),
    preconditions=(needs_target, only_cluster),
    fix_hints=(
        ("", "check Slurm on the login node"),
        ("no-commands", "put Slurm's commands on PATH"),
        ("no-default", "give --partition"),
        ("no-such-partition", "give an existing --partition"),
    ),
)
