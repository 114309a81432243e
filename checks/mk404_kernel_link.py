"""MK404 kernel-link: the exact launch command starts the kernel and it connects back.

The launch command is the profile's (``--profile``: what ``mkdoctor setup`` wrote into
the front end), else the one :mod:`mkdoctor.launch` builds from this run's options — the
same builder the wizard uses. Like the front end, this check listens on both link ports
(``-LinkMode Listen``), replaces the placeholders `` `linkname` `` and `` `ipaddress` ``,
and runs the command with ``/bin/sh -c`` — in an emulated front-end environment, not
mkdoctor's own: a GUI app's PATH, a front-end library directory whose libcrypto cannot
load first in LD_LIBRARY_PATH, and SSH_AUTH_SOCK only as the desktop gives it (see
"the front end's environment" below and mkdoctor/launch.py). It passes when the kernel
connects to both ports within ``--kernel-timeout``; its details say what was emulated.

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
import re
import shlex
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from mkdoctor.kernel import (ALONE_NOTE, LICENCE_PATTERNS, KernelPath, OwnKernels, early_reading,
                             ensure_login, own_kernels, read_kernel, start_retrying_alone,
                             version_from_path)
from mkdoctor.launch import (ENV, LaunchSpec, direct_linkname, kernel_fields, launch_command,
                             split_launch, ssh_index, substitute, tunnel_linkname)
from mkdoctor.cluster import not_cluster
from mkdoctor.fileio import read_or_empty
from mkdoctor.listen import LinkListener, ListenError, bind_address, taken_on_server
from mkdoctor.proc import current_log, set_current_log
from mkdoctor.model import (Check, Result, blocked_skip, failed, needs_target, passed, skipped,
                            warned)


def _launch(ctx, early: Optional[KernelPath] = None
            ) -> tuple[Optional[str], str, Optional[Result]]:
    """(launch command, where it came from, or a skip). ``early``: the kernel path as
    typed (:func:`~mkdoctor.kernel.early_reading`), used before MK401's reading is in."""
    prof = ctx.options.profile
    if prof is not None and getattr(prof, "launch_command", ""):
        return prof.launch_command, f"the profile {getattr(prof, 'name', '')}'s launch command", None
    # the kernel path as the remote login shell reads it (MK401)
    reading = early if early is not None else read_kernel(ctx)
    if reading is None:
        return None, "", skipped("skipped: no kernel path (MK401 kernel-found found none)",
                                 "give the kernel's path with --kernel PATH")
    # The link flag depends on the version (-mathlink before 10): the path's (MK401), else
    # what the kernel answers (MK402, which runs beside this check: waited for only then).
    version = (version_from_path(early.resolved) if early is not None
               else ctx.fact("MK401", "version") or "")
    if not version:
        ctx.wait_result("MK402")
        version = ctx.fact("MK402", "version_number") or ""
    t = ctx.target
    spec = LaunchSpec(
        destination=f"{t.user}@{t.host}" if t.user else t.host,
        **kernel_fields(reading), mode=ctx.mode, link_ports=ctx.test_ports,
        kernel_version=str(version),
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
                     port: Optional[int], mux: bool = True) -> list[str]:
    """Insert the run's connection options right after ``ssh`` (after an ``env`` prefix,
    which stays where it is) (pure; tested)."""
    from mkdoctor.openssh.session import MUX_ONLY

    at = max(ssh_index(local), 0)
    # through the run's master or not at all (never a second login; see session.MUX_ONLY);
    # mux=False: a login of its own (the login probe: what the front end's ssh does)
    extra = (["-o", f"ControlPath={control_path}", *MUX_ONLY] if mux else
             ["-o", f"ControlPath={control_path}", "-o", "ControlMaster=no", "-o", "BatchMode=yes"])
    if ssh_config and "-F" not in local[at:-1]:
        extra = ["-F", ssh_config] + extra
    if port and "-p" not in local[at:-1]:
        extra += ["-p", str(port)]
    return [*local[:at + 1], *extra, *local[at + 1:]]


# --- the front end's environment -------------------------------------------------------
# MK404 runs the command as the front end would, not in mkdoctor's own environment
# (see mkdoctor/launch.py for what is documented and what observed):
GUI_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"  # a macOS GUI app's PATH (launchd's; observed)
LIBRARY_VARS = ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH")
# A front-end library directory whose libcrypto cannot load: an ssh that reads
# LD_LIBRARY_PATH fails to start on it ("error while loading shared libraries", exit 127),
# as the system ssh does on the front end's own libcrypto.
DECOY_LIBRARIES = ("libcrypto.so", "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so.1.0.0",
                   "libcrypto.so.10", "libssl.so.3", "libssl.so.1.1", "libcrypto.3.dylib",
                   "libcrypto.dylib", "libcrypto.44.dylib", "libcrypto.46.dylib")
# ssh's words when sshd refuses a reverse forward: the launch command's ssh, a client of
# the run's master, then ends at once (exit 255) with the master's message
FORWARD_REFUSED = re.compile(r"remote port forwarding failed for listen port \d+")
LOADER_ERROR = re.compile(r"error while loading shared libraries|no version information available"
                          r"|symbol lookup error|Library not loaded|image not found")
# The front end's own library directory, SystemFiles/Libraries/$SystemID of its
# installation (documented: reference.wolfram.com/language/tutorial/
# WolframSystemFileOrganization.html), in the standard install places; the first found is
# put first in LD_LIBRARY_PATH, as the front end does (observed), before the stand-in.
# MKDOCTOR_FRONTEND_LIBRARIES (a directory) names another installation's.
FRONTEND_LIBRARY_GLOBS = (
    "/usr/local/Wolfram/*/*/SystemFiles/Libraries/Linux-x86-64",
    "/opt/Wolfram/*/*/SystemFiles/Libraries/Linux-x86-64",
    "/usr/local/Wolfram/*/*/SystemFiles/Libraries/Linux-ARM64",
    "/Applications/Mathematica*.app/Contents/SystemFiles/Libraries/MacOSX-*",
    "/Applications/Wolfram*.app/Contents/SystemFiles/Libraries/MacOSX-*",
)


def frontend_library_dir() -> tuple[Optional[str], str]:
    """(an installed front end's library directory, where it came from), or (None, '')."""
    import glob

    given = os.environ.get("MKDOCTOR_FRONTEND_LIBRARIES")
    if given:
        return given, "MKDOCTOR_FRONTEND_LIBRARIES"
    for pattern in FRONTEND_LIBRARY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[-1], "the installed front end"
    return None, ""


def decoy_library_dir(parent: str) -> str:
    """``parent``/SystemFiles/Libraries with an empty (unloadable) file for each libcrypto
    name ssh may ask for."""
    d = os.path.join(parent, "SystemFiles", "Libraries")
    os.makedirs(d, exist_ok=True)
    for name in DECOY_LIBRARIES:
        with open(os.path.join(d, name), "wb"):
            pass
    return d


# No desktop session could be read (a server, CI): what agent the front end gets is not
# known here, so a login that used this run's agent is not called a failure.
NO_DESKTOP = "no desktop session found"


def desktop_agent(ctx) -> tuple[Optional[str], str]:
    """The SSH_AUTH_SOCK the desktop gives GUI apps (and where that was read), or None:
    macOS ``launchctl getenv`` (launchd's environment for GUI apps), Linux the systemd
    user manager's environment (what apps it and D-Bus activation start get)."""
    import shutil
    import sys

    if sys.platform == "darwin" and shutil.which("launchctl"):
        done = ctx.run_local(["launchctl", "getenv", "SSH_AUTH_SOCK"])
        value = done.stdout.strip() if done.returncode == 0 else ""
        return (value or None), "launchctl getenv SSH_AUTH_SOCK"
    if shutil.which("systemctl"):
        done = ctx.run_local(["systemctl", "--user", "show-environment"])
        if done.returncode == 0:
            for line in done.stdout.splitlines():
                if line.startswith("SSH_AUTH_SOCK="):
                    return line.split("=", 1)[1] or None, "systemctl --user show-environment"
            return None, "systemctl --user show-environment"
    return None, NO_DESKTOP


def frontend_environment(base: dict[str, str], libdir: str, agent: Optional[str]) -> dict[str, str]:
    """``base`` as the front end would hand it on: a GUI PATH, its library directory first
    in the library paths, and the desktop's agent only (pure; tested)."""
    env = {k: v for k, v in base.items() if k not in LIBRARY_VARS and k != "SSH_AUTH_SOCK"}
    env["PATH"] = GUI_PATH
    for var in LIBRARY_VARS[:2]:
        env[var] = libdir + (os.pathsep + base[var] if base.get(var) else "")
    if agent:
        env["SSH_AUTH_SOCK"] = agent
    return env


def login_probe(local: list[str], ssh_config: Optional[str], port: Optional[int]) -> list[str]:
    """The launch command's ssh, its own login (no ControlPath, no forwards), running
    ``exit 0``: what the front end's ssh does before the kernel starts (pure; tested)."""
    i = max(ssh_index(local), 0)
    words, skip = [], False
    for w in local[i + 1:-1]:
        if skip:
            skip = False
        elif w == "-R":
            skip = True
        elif not w.startswith("-R"):
            words.append(w)
    argv = with_run_options([*local[:i + 1], *words, "exit 0"], "none", ssh_config, port, mux=False)
    return argv


def gui_ssh(local: list[str]) -> Optional[str]:
    """The ssh the command runs under the GUI PATH (its own path when absolute)."""
    import shutil

    i = ssh_index(local)
    if i < 0:
        return None
    word = local[i]
    return word if os.sep in word else shutil.which(word, path=GUI_PATH)


def proof_lines(local: list[str], tested: Optional[str], agent: Optional[str], agent_from: str,
                real_libs: str = "") -> tuple[list[str], list[str]]:
    """(what running the command in the emulated environment proves, what it warns of)."""
    proved, warn = [], []
    unsets = set()
    i = ssh_index(local)
    for j in range(1, max(i, 0)):
        if local[j - 1] == "-u":
            unsets.add(local[j])
    ssh = gui_ssh(local)
    if i >= 0 and os.sep in local[i]:
        same = tested and os.path.realpath(local[i]) == os.path.realpath(tested)
        proved.append(f"PATH: the command names ssh by its path ({local[i]}), so the front end's "
                      f"PATH ({GUI_PATH}) does not matter"
                      + ("; it is the ssh MK201 tested" if same else ""))
        if tested and not same:
            warn.append(f"the command's ssh ({local[i]}) is not the one MK201 tested ({tested})")
    else:
        proved.append(f"PATH: a bare 'ssh' under the front end's PATH ({GUI_PATH}) is "
                      f"{ssh or 'not found'}")
        if tested and ssh and os.path.realpath(ssh) != os.path.realpath(tested):
            warn.append(f"under the front end's PATH the command runs {ssh}, not the ssh "
                        f"MK201 tested ({tested})")
    libs = (f"the front end's library directory {real_libs}, then a stand-in with an "
            "unloadable libcrypto" if real_libs else
            "a stand-in front-end library directory with an unloadable libcrypto")
    how = (": the command removes it for ssh (env -u LD_LIBRARY_PATH)"
           if "LD_LIBRARY_PATH" in unsets else "")
    proved.append(f"library path: LD_LIBRARY_PATH starts with {libs}{how}")
    if agent:
        proved.append(f"agent: the desktop's ({agent_from}): {agent}")
    else:
        proved.append(f"agent: none (SSH_AUTH_SOCK unset; the desktop gives none: {agent_from})")
    return proved, warn


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
    taken: Callable[[], list[int]] = list
    reader: Optional[ThreadPoolExecutor] = None
    if ctx.mode == "tunnel":
        # In tunnel mode this check goes first and MK403 tests the forwards on their own
        # only when it fails. What already listens on the server's link ports is read
        # now, while MK401 runs and the launch is prepared, and before the launch command
        # forwards them (afterwards our own forward listens there): a stale listener
        # would take the kernel's link.
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="MK404-listeners")
        log = current_log()

        def read() -> list[int]:
            set_current_log(log)
            try:
                return taken_on_server(ctx, ctx.test_ports)
            finally:
                set_current_log(None)

        taken = reader.submit(read).result
    else:
        # direct mode: after MK403, which finds the link address the server reaches and
        # tests the laptop's firewall on these same ports
        path = ctx.wait_result("MK403")
        if path is not None and not path.status.ok:
            return blocked_skip("MK403", "link-path", path)
    # An absolute --kernel path whose version the path says starts at once, beside
    # MK401's reading on the server (as MK402 does); any other waits for MK401 (its
    # reading, and its version for the link flag).
    try:
        early = early_reading(ctx)
        if early is not None and not version_from_path(early.resolved):
            early = None
        if early is None:
            found = ctx.wait_result("MK401")
            if found is not None and not found.status.ok:
                return blocked_skip("MK401", "kernel-found", found)
        result, again = start_retrying_alone(
            ctx, lambda attempt: _attempt(ctx, attempt, taken, early),
            lambda r: r.facts.get("reason", ""))
    finally:
        if reader is not None:
            reader.shutdown(wait=False)
    if again:
        result.details.insert(0, ALONE_NOTE)
    return result  # (a failed MK401 replaces it: overlaps)


def _attempt(ctx, attempt: "OwnKernels.Attempt", taken: Callable[[], list[int]],
             early: Optional[KernelPath] = None) -> Result:
    """One run of the launch command; ``attempt`` says afterwards whether another of
    this run's kernels (MK402's) ran beside it. ``taken()``: the link ports something
    already listens on at the server (waited for just before the launch)."""
    command, origin, problem = _launch(ctx, early)
    if problem:
        return problem
    assert command is not None
    ports = ctx.test_ports
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
    if not local or ssh_index(local) < 0 or len(local) < ssh_index(local) + 2:
        return skipped("skipped: the launch command does not start with ssh",
                       "re-run mkdoctor setup", [command])
    argv = with_run_options(local, ctx.ssh.control_path,
                            str(ctx.options.ssh_config) if ctx.options.ssh_config else None,
                            ctx.target.port)
    shell_line = shlex.join(argv)
    details = [f"launch command ({origin}):", f"  {command}",
               "run as (the run's SSH connection inserted, so no second login):", f"  {shell_line}"]
    # what this laptop's desktop gives the front end, looked up while the server's
    # listeners are read; those are waited for before this laptop listens on the same
    # ports (when the server is this computer, it would see our own listener)
    agent, agent_from = desktop_agent(ctx)
    real, real_from = frontend_library_dir()
    held = taken()
    if held:
        return failed(
            f"port {held[0]} is already taken on the server: the kernel would connect to "
            "whatever holds it, not to this laptop",
            "see MK403 link-path: it names what holds it and how to end it (or choose "
            "other ports with --link-ports P1,P2)", details, reason="port-taken", ports=held)
    try:
        listener = LinkListener(listen_on, ports).open()
    except ListenError as err:
        return skipped(f"skipped: cannot listen on link port {err.port}: {err.reason}",
                       "see MK203 local-ports", details)
    limit = min(ctx.options.kernel_timeout, max(1.0, ctx.remaining() - ctx.options.timeout - 3))
    tmp = tempfile.mkdtemp(prefix="mkd-link-")
    log = os.path.join(tmp, "launch.log")
    proc = None
    forwards = forwards_of(local)
    pool = ThreadPoolExecutor(max_workers=len(forwards) + 1, thread_name_prefix="MK404")
    asked: dict = {}
    refusals: list[str] = []  # what the master said of a forward asked for beside the command
    look: Optional[_LeftoverLook] = None
    connected = False
    leftovers: list[str] = []
    doubts: list[str] = []
    # the run's deadline may end this check while the kernel runs: end it on the server
    # first (a kernel left there would hold a licence)
    unregister = ctx.at_deadline(lambda: _end_remote_kernel(ctx, linkname, timeout=DEADLINE_STEP_S,
                                                             patience=0))
    kernels = own_kernels(ctx)
    alive = kernels.begin(attempt)
    try:
        libdirs = ([real] if real else []) + [decoy_library_dir(tmp)]
        env = frontend_environment(dict(os.environ), os.pathsep.join(libdirs), agent)
        proved, doubts = proof_lines(local, ctx.fact("MK201", "ssh_path"), agent, agent_from,
                                     f"{real} ({real_from})" if real else "")
        details += ["run as the front end would (an emulated front-end environment):"] + [
            f"  {p}" for p in proved]
        own = os.environ.get("SSH_AUTH_SOCK")
        if own and own != agent:
            # This run logged in with an agent the front end does not have; the launch
            # command reuses that login, so prove the front end's own login separately.
            probe = login_probe(local, str(ctx.options.ssh_config) if ctx.options.ssh_config
                                else None, ctx.target.port)
            done = ctx.runner.run(["/bin/sh", "-c", shlex.join(probe)], ctx.step_timeout(),
                                  env=env)
            if done.returncode != 0:
                said = [f"  {ln}" for ln in (done.stderr or done.stdout).strip().splitlines()[-4:]]
                # With no desktop session to read, which agent the front end gets is not
                # known: the same finding is a warning, not a failure.
                verdict = warned if agent_from == NO_DESKTOP else failed
                return verdict(
                    ("the front end may not log in" if agent_from == NO_DESKTOP else
                     "the front end cannot log in") + ": this run used an ssh agent "
                    "(SSH_AUTH_SOCK) that the front end does not get, and without it the login fails",
                    "give GUI apps the agent: on macOS keep the key's passphrase in the "
                    "keychain (ssh-add --apple-use-keychain KEY, and UseKeychain yes in the "
                    "managed Host block); on Linux start the desktop's agent (systemctl --user "
                    "enable --now ssh-agent, or the keyring's) so that `systemctl --user "
                    "show-environment` has SSH_AUTH_SOCK, or set IdentityAgent in the Host block",
                    details + [f"login as the front end would: {shlex.join(probe)}", "ssh said:"]
                    + said, reason="frontend-agent")
            details.append("  agent: a login without this run's agent worked (exit 0): "
                           + shlex.join(probe))
        elif not own:
            details.append("  agent: this run's own login used no agent either")
        look = _LeftoverLook(ctx, limit + ctx.step_timeout() + 5)
        # The command's reverse forwards, asked of the master at the same time as the
        # command starts: its ssh (a client of the master) then finds them asked for and
        # goes straight on to its session, instead of asking for one after the other
        # (a round trip each); the server still binds them before the session starts.
        asked = {spec: pool.submit(ctx.ssh.control, "forward", "-R", spec,
                                   timeout=ctx.step_timeout()) for spec in forwards}
        proc = ctx.runner.spawn(["/bin/sh", "-c", shell_line], stdout_path=log, env=env)
        end = time.monotonic() + limit
        while proc is not None and time.monotonic() < end:
            if listener.connected_all(0.2) or proc.poll() is not None:
                break
        # (a moment for a connection still on its way, unless the run is ending)
        connected = listener.connected_all(0.5 if proc is not None and ctx.remaining() > 0
                                           else 0)
        listener.close_connections()  # ends the link: the kernel exits
        look.go(linkname)  # is the kernel still there once it had time to exit?
        rc = ctx.runner.stop(proc, grace=3.0) if proc is not None else None
    finally:
        # past the deadline (or interrupted) a step here raises: the log and the temporary
        # directory still go, whatever the cleanup meets
        try:
            listener.close()
            if proc is not None and proc.poll() is None:
                ctx.runner.stop(proc)
            if look is not None:
                look.close()  # an early end: no look from that session (the loop below does)
            for spec, fut in asked.items():  # answered before they are cancelled
                try:
                    done = fut.result(timeout=ctx.step_timeout() + 1)
                    if not done.ok:
                        refusals.append((done.stderr or done.stdout).strip())
                except Exception:  # noqa: BLE001 - cleanup goes on
                    pass
            # nothing to cancel or look for when nothing was launched (the front end's own
            # login failed, or something broke before the launch)
            launched = proc is not None or bool(asked)
            # the cancels beside the first look for a kernel left on the server
            first = (pool.submit(look.output, ctx.step_timeout())
                     if look is not None and launched else None)
            for fut in [pool.submit(ctx.ssh.control, "cancel", "-R", spec, timeout=5)
                        for spec in (forwards if launched else [])]:
                try:
                    fut.result(timeout=6)
                except Exception:  # noqa: BLE001 - cleanup goes on
                    pass
            pool.shutdown(wait=False)
            if launched:
                leftovers = _end_remote_kernel(
                    ctx, linkname, first=first.result() if first is not None else None)
        finally:
            output = read_or_empty(log)
            _rmtree(tmp)
            unregister()
            kernels.end(alive)
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
                details + ["killed on the server:"] + [f"  {x}" for x in leftovers], linked=True)
        peers = [f"port {p}: connection from {', '.join(states[p].peers)}" for p in ports]
        if doubts:
            return warned(
                "the kernel connected to both link ports, but " + "; ".join(doubts),
                "re-run mkdoctor setup: it writes the tested ssh by its path", details + peers,
                linked=True)
        return passed(
            f"the kernel started and connected to both link ports ({ports[0]}, {ports[1]}) "
            f"with the launch command run as the front end would (a GUI PATH, an incompatible "
            f"libcrypto first in LD_LIBRARY_PATH, {'the desktop agent' if agent else 'no agent'}); "
            f"then it exited cleanly",
            details + peers, linked=True)
    if leftovers:
        details += ["killed on the server (left running):"] + [f"  {x}" for x in leftovers]
    text = "\n".join([output, *refusals])
    for outcome, pattern in LICENCE_PATTERNS:
        if pattern.search(text):
            return failed("the kernel could not start: a licence or activation problem (see MK402)",
                          "fix MK402 kernel-starts first", details + ["it said:"] + shown,
                          reason=outcome)
    refused = FORWARD_REFUSED.search(text)
    if refused and not got:
        return failed(
            f"the server refused the launch command's reverse forward ({refused.group(0)})",
            "see MK403 link-path and MK312 tcp-forwarding: sshd's AllowTcpForwarding, "
            "PermitListen or a restrict key option forbids it",
            details + ["ssh said:"] + shown + [f"  {r}" for r in refusals], reason="forward-refused")
    if LOADER_ERROR.search(text) and not got:
        return failed(
            "ssh cannot start in the front end's environment: it loads the front end's "
            "libraries (LD_LIBRARY_PATH) and fails",
            "re-run mkdoctor setup: it writes the launch command as "
            f"'{ENV} -u LD_LIBRARY_PATH {ctx.fact('MK201', 'ssh_path') or '/usr/bin/ssh'} …'; "
            "or put that prefix before ssh in the front end's Launch command",
            details + ["it said:"] + shown, reason="frontend-libraries")
    if rc == 127 and re.search(r"\bssh: (command )?not found|ssh: No such file", text) and not got:
        return failed(
            f"ssh is not found under the front end's PATH ({GUI_PATH})",
            "re-run mkdoctor setup: it writes ssh by its absolute path",
            details + ["it said:"] + shown, reason="frontend-path")
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


DEADLINE_STEP_S = 3.0  # each remote step of the cleanup at the run's deadline
PS_ALL = "ps -A -o pid= -o args= 2>/dev/null || ps -eo pid=,args="


# The look's script. The link name comes on standard input, so that no command line but
# the kernel's (and its shell's) carries it. It lists the processes once; while one that
# carries the link name is still there it waits (up to LOOK_WAIT_S, `kill -0`: a shell
# builtin, no program started), and lists again only if one stays. So the look is sent as
# the link closes, beside the launch command's end, a kernel that exits within that time
# is not reported as left over, and the usual cost is one `ps` (a login node serves many
# hosts' looks at once; a `ps` every 20 ms for a slow kernel would be up to 100 of them).
LOOK_WAIT_S = 2.0
_LOOK_SCRIPT = f"""IFS= read -r _go || exit 3
[ -n "$_go" ] || exit 3
out=$({PS_ALL})
pids=$(printf '%s\\n' "$out" | while read -r pid args; do
  case $args in *"$_go"*) printf '%s ' "$pid" ;; esac
done)
n=0
while [ -n "$pids" ] && [ "$n" -lt {int(LOOK_WAIT_S / 0.02)} ]; do
  sleep 0.02 2>/dev/null || {{ sleep 1; n=$((n+49)); }}
  n=$((n+1)); left=''
  for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
  pids=$left
done
if [ -n "$pids" ]; then {PS_ALL}; fi
"""


class _LeftoverLook:
    """The first look for a kernel left on the server once the link closed, in an ssh
    session opened beforehand that waits for a line on its standard input (the link
    name): when the link closes, the look costs one round trip, not a session's start
    as well, and it waits on the server (up to :data:`LOOK_WAIT_S`) for the kernel to
    exit rather than after the launch command's end."""

    def __init__(self, ctx, timeout: float) -> None:
        read_end, self._write_end = os.pipe()
        self._done = None

        def look() -> None:
            try:
                self._done = ctx.ssh.run(_LOOK_SCRIPT, timeout, stdin=read_end)
            finally:
                os.close(read_end)

        self._thread = threading.Thread(target=look, name="MK404-look", daemon=True)
        self._thread.start()

    def go(self, linkname: str) -> None:
        """Look now for processes whose command line carries ``linkname``."""
        if self._write_end is not None:
            try:
                os.write(self._write_end, linkname.encode() + b"\n")
            except OSError:
                pass
            self.close()

    def close(self) -> None:
        """No look (end of input: the session ends without one). Safe to call twice."""
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None

    def output(self, wait: float) -> Optional[str]:
        """What ``ps`` printed, or None when the look did not run (then look anew)."""
        self.close()
        self._thread.join(wait)
        done = self._done
        return done.stdout if done is not None and done.exit_code == 0 else None


def _end_remote_kernel(ctx, linkname: str, timeout: Optional[float] = None,
                       patience: int = 3, first: Optional[str] = None) -> list[str]:
    """Processes on the server whose command line carries this link name, after the link
    closed: wait up to ``patience`` s for them to exit, then kill them. Returns what was
    killed. ``timeout``: each remote step's, given at the deadline (else the step timeout).
    ``first``: what the first look (a :class:`_LeftoverLook`) printed, if it ran."""
    found: list[str] = []
    for attempt in range(patience + 1):
        if attempt == 0 and first is not None:
            listing = first
        else:
            listing = ctx.ssh.run(PS_ALL, timeout or ctx.step_timeout()).stdout
        found = []
        for line in listing.splitlines():
            pid, _, args = line.strip().partition(" ")
            if linkname in args and pid.isdigit():
                found.append(f"{pid} {args.strip()[:200]}")
        if not found or attempt == patience:
            break
        time.sleep(1)
    if found:
        pids = [f.split(" ", 1)[0] for f in found]
        ctx.ssh.run(["kill", "-9", *pids], timeout or ctx.step_timeout())
    return found


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


CHECK = Check(
    id="MK404",
    name="kernel-link",
    group="kernel",
    title="the exact launch command of the configuration starts the kernel and it connects to both link ports",
    run=run,
    # Beside MK402 (overlaps): a run waits for one kernel start, not two. At the run's
    # deadline its kernel is ended on the server first (Context.at_deadline); a licence
    # for one kernel at a time makes the refused one start again alone (OwnKernels).
    # Not after MK403 in tunnel mode: the kernel's link crosses the same reverse forwards
    # (MK403 then only says which part failed); in direct mode run() waits for MK403.
    # MK401 (the kernel's path and version) is overlapped too: run() waits for it after
    # the server's listeners are read, except for an absolute --kernel path whose version
    # the path says, which it launches at once; a failed MK401 then replaces the result.
    needs=("MK304", "MK401", "MK402"),
    overlaps=("MK402", "MK401"),
    after=("MK101", "MK201"),
    preconditions=(needs_target, not_cluster("MK605 node-kernel-link proves the cluster launch command")),
    reads=("mode",),  # ctx.mode: waits for the check that decides it
    long_running=True,  # a kernel start
    fix_hints=(
        ("", "run the launch command by hand (-v)"),
        ("forward-refused", "allow TCP forwarding (MK312)"),
        ("port-taken", "free the ports on the server"),
        ("frontend-agent", "give GUI apps the ssh agent"),
        ("frontend-libraries", "re-run mkdoctor setup"),
        ("frontend-path", "re-run mkdoctor setup"),
        ("not-found", "give the kernel's path (--kernel)"),
    ),
)
