"""MK604 node-link-path: a compute node reaches the laptop's link ports, through the login node.

Runs the launch command's own path with a probe in place of the kernel: ``ssh -R P1 -R
P2 LOGIN`` (a connection of its own, as the front end's), the relay on the login node,
``srun`` with the launch command's allocation, and on the node the relay's probe, which
connects to both link ports the way the kernel would and sends a line on each. It passes
when both connections and both lines reach the listeners this check opens on the
laptop's link ports. Nothing here needs the admins: the way back is srun's own standard
input and output (no GatewayPorts, no ssh into the node, no listener on the login node's
cluster address). Afterwards the link is closed and the probe's job must leave the queue.
"""

from __future__ import annotations

import dataclasses

from mkdoctor.cluster import launch_command, only_cluster, run_launch, spec_for_run
from mkdoctor.cluster_relay import PROBE
from mkdoctor.kernel import ensure_login
from mkdoctor.listen import ListenError
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped

WANT = b"mkdoctor-probe\n"


def run(ctx) -> Result:
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    spec = spec_for_run(ctx, kernel=PROBE)
    command = launch_command(spec)
    try:
        seen = run_launch(ctx, command, want=WANT)
    except ListenError as err:
        return skipped(f"skipped: cannot listen on link port {err.port}: {err.reason}",
                       "see MK203 local-ports")
    shown = [f"  {ln}" for ln in seen.output.strip().splitlines()[-6:]]
    details = [f"probe on node {seen.node or '?'} (job {seen.job or '?'})"]
    if seen.connected and seen.data_ok:
        if seen.left:
            return failed(f"the path works, but the probe's job stayed after the link closed: {seen.left}",
                          f"cancel it (ssh {ctx.target.display} scancel {seen.job}); report it: "
                          "the relay could not end the job", details + shown, reason="left-behind")
        how = ("ssh -R to the laptop" if spec.via == "forward" else
               "the ssh session's own stdio to the laptop")
        return passed(f"the compute node {seen.node} reached both link ports on the laptop "
                      f"(srun's stdio to the login node, {how})", details, node=seen.node)
    text = seen.output
    if "remote port forwarding failed" in text or "forwarding failed" in text:
        # The stdio path needs no forwarding: try it, so the fix can name what works.
        other = run_launch(ctx, launch_command(dataclasses.replace(spec, via="stdio")), want=WANT)
        if other.connected and other.data_ok and not other.left:
            return failed("the login node refuses reverse forwards (ssh -R), but the link works "
                          "through the ssh session itself",
                          "re-run mkdoctor setup with --cluster-link stdio (no forwarding needed), "
                          "or ask the admins for AllowTcpForwarding remote on the login node",
                          details + shown + [f"stdio path: the probe on {other.node} reached both ports"],
                          reason="forwarding", stdio_works=True)
        return failed("the login node refused the reverse forwards (ssh -R)",
                      "see MK312 tcp-forwarding: the login node's sshd must allow "
                      "AllowTcpForwarding remote (or yes); ask the admins", details + shown,
                      reason="forwarding")
    if "cannot reach link port" in text:
        return failed("the node's connections reached the login node, but not the laptop",
                      "the ssh -R forwards are not listening on the login node's 127.0.0.1 "
                      "(another program holds the port there? pick other --link-ports)",
                      details + shown, reason="forward-unreachable")
    if "python3" in text and ("not found" in text or "No such file" in text):
        return failed("python3 is not on the login node or the compute node",
                      "the relay needs python3 on both (ask the admins, or 'module load python' "
                      "in ~/.bashrc)", details + shown, reason="no-python")
    if not seen.node:
        return failed("the probe never started on a compute node (see MK602 allocation)",
                      "fix MK602 allocation first", details + shown, reason="no-node")
    got = ", ".join(str(p) for p in seen.ports_connected) or "none"
    return failed(f"the probe on {seen.node} did not reach both link ports (connected: {got})",
                  "run mkdoctor -v and read the relay's messages; ask the admins whether srun's "
                  "standard I/O works (srun --pty bash)", details + shown, reason="no-connection")


CHECK = Check(
    id="MK604",
    name="node-link-path",
    group="cluster",
    title="the compute node's path back to the laptop's link ports works, through the login node",
    run=run,
    needs=("MK602",),
    after=("MK403",),
    preconditions=(needs_target, only_cluster),
    fix_hints=(
        ("", "open the node's path back"),
    ),
)
