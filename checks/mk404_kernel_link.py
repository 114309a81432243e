"""MK404 kernel-link: the exact launch command starts the kernel and it connects back.

The launch command is the profile's (``--profile``: what ``mkdoctor setup`` wrote into
the front end), else the one :mod:`mkdoctor.launch` builds from this run's options — the
same builder the wizard uses. Like the front end, this check listens on both link ports
(``-LinkMode Listen``), replaces the placeholders `` `linkname` `` and `` `ipaddress` ``,
and runs the command with ``sh -c``. It passes when the kernel connects to both ports
within ``--kernel-timeout``.

To avoid a second authentication, ``-o ControlPath=<the run's socket> -o
ControlMaster=no`` is inserted right after ``ssh`` (and ``-F`` with ``--ssh-config`` when
the command has none): the command otherwise runs exactly as written. Afterwards the link
is closed (a kernel exits when its link closes), the local ssh is ended with its process
group, reverse forwards it opened are cancelled, and the remote host is checked for a
kernel still running with this link name (killed and reported if so — it would hold a
licence).
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from typing import Optional

from mkdoctor.kernel import LICENCE_PATTERNS, ensure_login, kernel_path
from mkdoctor.launch import (LaunchSpec, direct_linkname, launch_command, split_launch, substitute,
                           tunnel_linkname)
from mkdoctor.listen import LinkListener, ListenError, bind_address
from mkdoctor.cluster import not_cluster
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped, warned


def _launch(ctx) -> tuple[Optional[str], str, Optional[Result]]:
    """(launch command, where it came from, or a skip)."""
    prof = ctx.options.profile
    if prof is not None and getattr(prof, "launch_command", ""):
        return prof.launch_command, f"the profile {getattr(prof, 'name', '')}'s launch command", None
    kernel = kernel_path(ctx)
    if not kernel:
        return None, "", skipped("skipped: no kernel path (MK401 kernel-found found none)",
                                 "give the kernel's path with --kernel PATH")
    version = ctx.fact("MK402", "version_number") or ctx.fact("MK401", "version") or ""
    t = ctx.target
    spec = LaunchSpec(
        destination=f"{t.user}@{t.host}" if t.user else t.host,
        kernel=kernel, mode=ctx.mode, link_ports=ctx.link_ports, kernel_version=str(version),
        link_host=_link_host(ctx),
        ssh_config=str(ctx.options.ssh_config) if ctx.options.ssh_config else None,
    )
    return launch_command(spec), "built from this run's options (mkdoctor.launch)", None


def _link_host(ctx) -> Optional[str]:
    if ctx.mode == "tunnel":
        return None
    return (ctx.options.link_host or ctx.fact("MK403", "link_host")
            or ctx.fact("MK101", "link_address"))


def with_run_options(local: list[str], control_path: str, ssh_config: Optional[str],
                     port: Optional[int]) -> list[str]:
    """Insert the run's connection options right after ``ssh`` (pure; tested)."""
    extra = ["-o", f"ControlPath={control_path}", "-o", "ControlMaster=no", "-o", "BatchMode=yes"]
    if ssh_config and "-F" not in local[:-1]:
        extra = ["-F", ssh_config] + extra
    if port and "-p" not in local[:-1]:
        extra += ["-p", str(port)]
    return [local[0], *extra, *local[1:]]


def forwards_of(local: list[str]) -> list[str]:
    """The ``-R`` specs of an ssh argv (``-R spec`` and ``-Rspec``)."""
    out = []
    for i, a in enumerate(local[:-1]):
        if a == "-R" and i + 1 < len(local) - 1:
            out.append(local[i + 1])
        elif a.startswith("-R") and len(a) > 2:
            out.append(a[2:])
    return out


def run(ctx) -> Result:
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    command, origin, problem = _launch(ctx)
    if problem:
        return problem
    assert command is not None
    ports = ctx.link_ports
    if ctx.mode == "tunnel":
        linkname, ipaddress, listen_on = tunnel_linkname(ports), "127.0.0.1", "127.0.0.1"
    else:
        host = _link_host(ctx)
        if not host:
            return skipped("skipped: no link address for direct mode (give --link-host ADDRESS)",
                           "give the laptop's address with --link-host ADDRESS")
        linkname, ipaddress, listen_on = direct_linkname(ports, host), host, bind_address(host)
    filled = substitute(command, linkname=linkname, ipaddress=ipaddress)
    try:
        local, kernel_args = split_launch(filled)
    except ValueError as exc:
        return failed(f"the launch command cannot be parsed by a shell: {exc}",
                      "re-run mkdoctor setup to rewrite it", [command])
    if not local or os.path.basename(local[0]) != "ssh" or len(local) < 2:
        return skipped("skipped: the launch command does not start with ssh",
                       "re-run mkdoctor setup", [command])
    argv = with_run_options(local, ctx.ssh.control_path,
                            str(ctx.options.ssh_config) if ctx.options.ssh_config else None,
                            ctx.target.port)
    shell_line = shlex.join(argv)
    details = [f"launch command ({origin}):", f"  {command}",
               "run as (the run's SSH connection inserted, so no second login):", f"  {shell_line}"]
    try:
        listener = LinkListener(listen_on, ports).open()
    except ListenError as err:
        return skipped(f"skipped: cannot listen on link port {err.port}: {err.reason}",
                       "see MK203 local-ports", details)
    limit = min(ctx.options.kernel_timeout, max(1.0, ctx.remaining() - ctx.options.timeout - 3))
    tmp = tempfile.mkdtemp(prefix="mkd-link-")
    log = os.path.join(tmp, "launch.log")
    proc = None
    connected = False
    leftovers: list[str] = []
    try:
        proc = ctx.runner.spawn(["sh", "-c", shell_line], stdout_path=log)
        end = time.monotonic() + limit
        while proc is not None and time.monotonic() < end:
            if listener.connected_all(0.2) or proc.poll() is not None:
                break
        connected = listener.connected_all(0.5 if proc is not None else 0)
        listener.close_connections()  # ends the link: the kernel exits
        rc = ctx.runner.stop(proc, grace=3.0) if proc is not None else None
    finally:
        listener.close()
        if proc is not None and proc.poll() is None:
            ctx.runner.stop(proc)
        for spec in forwards_of(local):
            try:
                ctx.ssh.control("cancel", "-R", spec, timeout=5)
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
        try:
            leftovers = _end_remote_kernel(ctx, linkname)
        finally:  # past the deadline that raises: the log and temp dir still go
            output = _read(log)
            _rmtree(tmp)
    shown = [f"  {ln}" for ln in output.strip().splitlines()[-6:]]
    states = listener.states
    got = [p for p in ports if states[p].peers]
    if connected:
        if leftovers:
            return warned(
                "the kernel connected to both link ports, but did not exit when the link closed "
                "(mkdoctor killed it)",
                "a kernel that outlives its link holds a licence: update the kernel, and "
                f"look for others still running: ssh {ctx.target.display} pgrep -af Kernel",
                details + ["killed on the server:"] + [f"  {x}" for x in leftovers])
        return passed(
            f"the kernel started and connected to both link ports ({ports[0]}, {ports[1]}) "
            f"with the launch command; then it exited cleanly",
            details + [f"port {p}: connection from {', '.join(states[p].peers)}" for p in ports])
    if leftovers:
        details += ["killed on the server (left running):"] + [f"  {x}" for x in leftovers]
    text = output
    for outcome, pattern in LICENCE_PATTERNS:
        if pattern.search(text):
            return failed("the kernel could not start: a licence or activation problem (see MK402)",
                          "fix MK402 kernel-starts first", details + ["it said:"] + shown,
                          reason=outcome)
    if rc is not None and rc == 255 and not got:
        return failed("ssh failed to run the launch command",
                      "run the launch command in a terminal and read ssh's message",
                      details + ["ssh said:"] + shown, reason="ssh")
    if rc == 127 or "command not found" in text or "No such file" in text:
        return failed("the kernel in the launch command was not found on the remote host",
                      "fix the kernel path (see MK401) and re-run mkdoctor setup",
                      details + ["it said:"] + shown, reason="not-found")
    partly = f" (only port {got[0]} got a connection)" if got else ""
    if ctx.mode == "tunnel":
        hint = "check MK403 link-path (the reverse forwards) and MK402 kernel-starts"
    else:
        hint = "check MK403 link-path (the firewall) and the link address (--link-host)"
    exited = proc is not None and rc is not None and rc >= 0
    summary = (f"the launch command exited (status {rc}) before the kernel connected{partly}"
               if exited and not got else
               f"the kernel did not connect to both link ports within {limit:g} s{partly}")
    return failed(summary, hint, details + (["output:"] + shown if shown else []),
                  reason="no-connection", ports_connected=got)


def _end_remote_kernel(ctx, linkname: str) -> list[str]:
    """Processes on the server whose command line carries this link name, after the link
    closed: wait up to 3 s for them to exit, then kill them. Returns what was killed."""
    found: list[str] = []
    for attempt in range(4):
        done = ctx.ssh.run("ps -A -o pid= -o args= 2>/dev/null || ps -eo pid=,args=", ctx.step_timeout())
        found = []
        for line in done.stdout.splitlines():
            pid, _, args = line.strip().partition(" ")
            if linkname in args and pid.isdigit():
                found.append(f"{pid} {args.strip()[:200]}")
        if not found or attempt == 3:
            break
        time.sleep(1)
    if found:
        pids = [f.split(" ", 1)[0] for f in found]
        ctx.ssh.run(["kill", "-9", *pids], ctx.step_timeout())
    return found


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


CHECK = Check(
    id="MK404",
    name="kernel-link",
    group="kernel",
    title="the exact launch command of the configuration starts the kernel and it connects to both link ports",
    run=run,
    needs=("MK402", "MK403"),
    after=("MK101",),
    preconditions=(needs_target, not_cluster("MK605 node-kernel-link proves the cluster launch command")),
)
