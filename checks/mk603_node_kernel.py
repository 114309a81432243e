"""MK603 node-kernel: the kernel exists and starts on a compute node, not only on the login node.

With the launch command's allocation, ``srun`` runs on a compute node: its host name,
whether the kernel path exists and is executable *there* (a path on the login node's
disk, or one that appears only after ``module load``, is not on the nodes), then
``KERNEL -noprompt -run EXPR`` as MK402 does (reference.wolfram.com/language/ref/
program/WolframKernel.html), under ``timeout``. The output is classified as MK402's.

A licence failure on the node while the kernel starts on the login node (MK402 pass) is
a node-locked licence: such a licence is for one machine, and each compute node is a
machine with its own MathID (observed: "Mathematica cannot find a valid password" with
the node's machine name). The fix is a network licence (MathLM: a ``!server`` line in
mathpass, support.wolfram.com/112) and, at sites that meter licence tokens in Slurm,
``--licenses``.

Facts: ``node``, ``version``, ``version_number``.
"""

from __future__ import annotations

import re
import secrets

from mkdoctor.cluster import (cancelled_at_deadline, check_job_name, node_kernel_script, only_cluster,
                              spec_for_run, srun_args)
from mkdoctor.kernel import classify_run, ensure_login, kernel_path, run_expression
from mkdoctor.launch import kernel_words
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped


def run(ctx) -> Result:
    kernel = kernel_path(ctx)
    if not kernel:
        return skipped("skipped: no kernel path (give --kernel PATH, the kernel's path on the nodes)",
                       "give the kernel's path on the compute nodes with --kernel PATH")
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    spec = spec_for_run(ctx, kernel=kernel)
    srun = srun_args(spec)
    limit = min(ctx.options.kernel_timeout, max(2.0, ctx.remaining() - ctx.options.timeout - 20))
    token = secrets.token_hex(4)
    name = check_job_name()
    script = node_kernel_script(srun, name, kernel,
                                ["-noprompt", "-run", run_expression(token)], limit,
                                prefix=kernel_words(spec)[:-1])
    with cancelled_at_deadline(ctx, name):
        done = ctx.ssh.run(script, ctx.step_timeout(limit + 25))
    m = re.search(r"^MKD-NODE (\S+) (\S+)", done.stdout, re.M)
    node = m.group(1) if m else ""
    where = f"on the compute node {node}" if node else "on a compute node"
    out = "\n".join(ln for ln in done.stdout.splitlines() if not ln.startswith("MKD-"))
    outcome = classify_run(out, done.stderr, done.exit_code, token)
    shown = [f"  {ln}" for ln in outcome.evidence]
    details = [f"node: {node or '(none: srun did not start the task)'}"]
    if not node:
        return failed("srun did not start a task on a compute node (see MK602 allocation)",
                      "fix MK602 allocation first", details + shown, reason="no-node")
    login_ok = ctx.result("MK402") is not None and ctx.result("MK402").status.ok
    if "MKD-NOKERNEL" in done.stdout:
        also = " (it does on the login node)" if ctx.fact("MK401", "kernel") == kernel else ""
        return failed(f"{kernel} does not exist {where}{also}",
                      "use the kernel's path on a filesystem the nodes share (ask the admins where "
                      "Mathematica is installed on the compute nodes; with environment modules, "
                      "'module show mathematica' prints the path)", details, reason="not-on-node",
                      node=node)
    if "MKD-NOEXEC" in done.stdout or outcome.outcome == "not-executable":
        return failed(f"{kernel} cannot be executed {where}",
                      "ask the admins: the kernel is not executable for you on the nodes",
                      details, reason="not-executable", node=node)
    if outcome.outcome == "ok":
        return passed(f"the kernel answered {where}: version "
                      f"{outcome.version_number or outcome.version}", details,
                      node=node, version=outcome.version, version_number=outcome.version_number)
    if outcome.outcome in ("licence", "activation"):
        machine = re.search(r"Machine name:\s*(\S+)", out + done.stderr)
        named = f" (it names the machine {machine.group(1)})" if machine else ""
        if login_ok:
            summary = (f"the kernel starts on the login node but has no licence {where}{named}: "
                       "a node-locked licence (each node has its own MathID)")
        else:
            summary = f"the kernel has no valid licence {where}{named}"
        return failed(summary,
                      "use a network licence: ask the admins for the cluster's MathLM server and "
                      "put '!SERVER' in ~/.Wolfram/Licensing/mathpass (support.wolfram.com/112); "
                      "if the site meters Mathematica tokens in Slurm, add --licenses NAME:1",
                      details + ["the kernel said:"] + shown, reason="node-licence", node=node)
    if outcome.outcome == "licence-server":
        return failed(f"the licence server did not grant a licence {where}",
                      "the nodes must reach the MathLM server (ask the admins); if all licences "
                      "are in use, wait or ask for --licenses tokens", details + shown,
                      reason="licence-server", node=node)
    if outcome.outcome == "crash":
        return failed(f"the kernel crashed {where} ({outcome.signal_name})",
                      "ask for more memory (the partition's default may be small) or check "
                      "the install on the node", details + shown, reason="crash", node=node)
    if outcome.outcome == "not-found" or done.exit_code == 127:
        return failed(f"{kernel}: not found {where}",
                      "use the kernel's path on the nodes (--kernel PATH)", details + shown,
                      reason="not-found", node=node)
    if done.exit_code == 124 or outcome.outcome in ("hang", "error"):
        return failed(f"the kernel did not answer within {limit:g} s {where}",
                      "a licence server the node cannot reach makes the kernel wait; ask the "
                      "admins whether the nodes reach MathLM", details + shown, reason="hang",
                      node=node)
    return failed(f"the kernel started {where} but did not evaluate the test expression",
                  "run it by hand in an interactive job: srun --pty KERNEL", details + shown,
                  reason=outcome.outcome, node=node)


CHECK = Check(
    id="MK603",
    name="node-kernel",
    group="cluster",
    title="the kernel exists and starts on a compute node; a node-locked licence is recognised",
    run=run,
    needs=("MK602",),
    after=("MK401", "MK402"),
    preconditions=(needs_target, only_cluster),
    long_running=True,  # a kernel start on the node
    fix_hints=(
        ("", "make the kernel start on a node"),
    ),
)
