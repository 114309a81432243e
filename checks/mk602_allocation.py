"""MK602 allocation: the launch command's allocation is granted within the timeout and released.

Runs, on the login node, ``srun --job-name=mkdoctor-check-XXXX`` with the launch
command's allocation options (``--nodes=1 --ntasks=1``, ``--partition``, ``--time``,
``--cpus-per-task``, ``--account``, ``--licenses``) and the command ``hostname``, under
``timeout`` (``--kernel-timeout``, cut to the run's deadline), while ``squeue`` is
polled for the job's state and reason. Afterwards the job is cancelled by name
(``scancel --name --user``) and ``squeue`` must no longer show it.

* granted: pass (with the node and how long it took);
* refused at once (srun's error: invalid account, partition, time limit, licence
  name): fail with srun's message;
* still queued at the timeout: the ``squeue`` reason (slurm.schedmd.com/squeue.html,
  JOB REASON CODES) decides: ``Priority``/``Resources``/``Licenses`` (the cluster is busy:
  the kernel would start later) warn, a reason that waiting does not cure
  (``PartitionDown``, ``PartitionTimeLimit``, ``ReqNodeNotAvail``, ``Assoc*Limit``, ...)
  fails;
* the job still listed after the cancel: fail (a job left behind burns the allocation).

Facts: ``node`` (where the test job ran), ``seconds`` (how long the grant took).
"""

from __future__ import annotations

from mkdoctor.cluster import (UNRESOLVABLE, allocation_script, cancelled_at_deadline, check_job_name,
                              only_cluster, spec_for_run, srun_args)
from mkdoctor.kernel import ensure_login
from mkdoctor.model import Check, Result, failed, needs_target, passed, warned

WAITING = {"Priority": "jobs with a higher priority are ahead",
           "Resources": "no node is free yet",
           "Licenses": "the licence tokens (--licenses) are all in use",
           "None": "the scheduler had not looked at it yet",
           "BeginTime": "it may not start yet"}


def run(ctx) -> Result:
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    spec = spec_for_run(ctx, kernel="-")
    srun = srun_args(spec)
    limit = min(ctx.options.kernel_timeout, max(2.0, ctx.remaining() - ctx.options.timeout - 8))
    name = check_job_name()
    with cancelled_at_deadline(ctx, name):
        done = ctx.ssh.run(allocation_script(srun, name, limit), ctx.step_timeout(limit + 20))
    lines = done.stdout.splitlines()

    def tagged(tag: str) -> list[str]:
        return [ln[len(tag):].strip() for ln in lines if ln.startswith(tag + " ") or ln == tag]

    rc_line = (tagged("MKD-RC") or ["? 0"])[0].split()
    rc = int(rc_line[0]) if rc_line and rc_line[0].lstrip("-").isdigit() else None
    seconds = int(rc_line[1]) if len(rc_line) > 1 and rc_line[1].isdigit() else 0
    last = (tagged("MKD-LAST") or [""])[0]
    node = (tagged("MKD-NODE") or [""])[0]
    errors = tagged("MKD-ERR")
    left = (tagged("MKD-LEFT") or [""])[0]
    details = [f"srun --job-name={name} {' '.join(srun)} hostname"]
    if last:
        details.append(f"squeue (job|state|reason|nodes): {last}")
    details += [f"srun: {e}" for e in errors[-4:]]
    if left:
        return failed(f"the test job is still in the queue after scancel ({left})",
                      f"cancel it: ssh {ctx.target.display} scancel --name {name}; then ask the "
                      "admins why scancel does not end jobs", details, reason="left-behind")
    if rc == 0 and node:
        return passed(f"a node was allocated in {seconds} s ({node}) and released",
                      details, node=node, seconds=seconds)
    fields = last.split("|")
    state = fields[1] if len(fields) > 1 else ""
    reason = fields[2] if len(fields) > 2 else ""
    if rc == 124 and state == "PENDING":
        why = UNRESOLVABLE.get(reason)
        if why:
            return failed(f"the request waits and will not start: {reason} ({why})",
                          "change the request (--partition, --time, --account, --cpus) to what "
                          "the partition allows (sinfo; scontrol show partition), or ask the admins",
                          details, reason=reason)
        why = WAITING.get(reason, "see squeue's reason")
        return warned(f"still queued after {limit:g} s: {reason or '?'} ({why})",
                      "the kernel would start once the job is granted; ask for less (--time, "
                      "--cpus), pick a partition with free nodes (sinfo -p NAME), or wait",
                      details, reason=reason or "queued")
    if rc == 124:
        return failed(f"srun did not get an allocation within {limit:g} s",
                      "run srun by hand on the login node and read its messages", details,
                      reason="timeout")
    said = errors[-1] if errors else f"exit status {rc}"
    return failed(f"the scheduler refused the request: {said}",
                  "fix the request (--partition, --time, --account, --cpus, --licenses): "
                  "sinfo and scontrol show partition list what is allowed", details,
                  reason="refused")


CHECK = Check(
    id="MK602",
    name="allocation",
    group="cluster",
    title="a small test allocation on the partition is granted within the timeout and released",
    run=run,
    needs=("MK601",),
    preconditions=(needs_target, only_cluster),
    long_running=True,  # the scheduler's allocation
    fix_hints=(
        ("", "run srun by hand"),
        ("left-behind", "scancel the test job"),
    ),
)
