"""MK605 node-kernel-link: the exact written launch command works end to end and leaves no job.

The launch command is the profile's (what setup wrote into the front end), else the one
:func:`mkdoctor.cluster.launch_command` builds from this run's options. Like the front
end, this check listens on both link ports and runs the command with ``sh -c`` (stdin
at end of file), on a connection of its own (``-o ControlPath=none``: the relay's
watchdog is that ssh session; ``BatchMode=yes`` so nothing prompts). It passes when the
kernel on the compute node connects to both ports, the command exits after the link is
closed, and the job is gone from ``squeue`` within 20 s (a job left behind burns the
user's allocation: it is cancelled and reported).
"""

from __future__ import annotations

from mkdoctor.cluster import is_cluster_command, launch_command, only_cluster, run_launch, spec_for_run
from mkdoctor.kernel import LICENCE_PATTERNS, ensure_login, kernel_path
from mkdoctor.listen import ListenError
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped


def run(ctx) -> Result:
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    prof = ctx.options.profile
    if prof is not None and getattr(prof, "launch_command", ""):
        command, origin = prof.launch_command, f"the profile {prof.name}'s launch command"
        if not is_cluster_command(command):
            return failed("the profile's launch command does not start the kernel through the "
                          "scheduler (it would run on the login node)",
                          "re-run mkdoctor setup --scheduler slurm to write the cluster launch "
                          "command", [command[:300]], reason="not-cluster-command")
    else:
        kernel = kernel_path(ctx)
        if not kernel:
            return skipped("skipped: no kernel path", "give the kernel's path with --kernel PATH")
        command, origin = launch_command(spec_for_run(ctx, kernel=kernel)), "built from this run's options"
    try:
        seen = run_launch(ctx, command)
    except ListenError as err:
        return skipped(f"skipped: cannot listen on link port {err.port}: {err.reason}",
                       "see MK203 local-ports")
    shown = [f"  {ln}" for ln in seen.output.strip().splitlines()[-6:]]
    details = [f"launch command ({origin}), {len(command)} characters",
               f"kernel on node {seen.node or '?'} (job {seen.job or '?'})"]
    if seen.left:
        return failed(f"the job stayed in the queue after the link closed: {seen.left} "
                      "(cancelled now)", "a job left behind burns your allocation: re-run "
                      "mkdoctor setup to rewrite the launch command; look for others: "
                      f"ssh {ctx.target.display} squeue --me", details + shown,
                      reason="left-behind")
    if seen.connected:
        if not seen.exited_after_close:
            return failed("the kernel connected, but the launch command did not end after the "
                          "link closed", "the kernel may outlive its link: update it; check "
                          "squeue --me on the login node", details + shown, reason="no-exit")
        return passed(f"the launch command started the kernel on {seen.node}; it connected to "
                      f"both link ports, and the job ended with the link", details, node=seen.node)
    for outcome, pattern in LICENCE_PATTERNS:
        if pattern.search(seen.output):
            return failed("the kernel could not start on the node: a licence problem (see MK603)",
                          "fix MK603 node-kernel first", details + shown, reason=outcome)
    got = ", ".join(str(p) for p in seen.ports_connected) or "none"
    return failed(f"the kernel did not connect to both link ports (connected: {got}; "
                  f"exit status {seen.exit_code})",
                  "see MK604 node-link-path and MK603 node-kernel; run the launch command in a "
                  "terminal to read its messages", details + shown, reason="no-connection")


CHECK = Check(
    id="MK605",
    name="node-kernel-link",
    group="cluster",
    title="the exact written launch command allocates a node, the kernel there connects to both link ports, and the allocation ends with the link",
    run=run,
    needs=("MK603", "MK604"),
    preconditions=(needs_target, only_cluster),
    long_running=True,  # a kernel start on the node
    fix_hints=(
        ("", "run the launch command by hand (-v)"),
    ),
)
