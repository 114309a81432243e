"""MK401 kernel-found: the kernel executable on the remote host, and its version.

The front end's launch command names the kernel on the remote host; a wrong path is the
commonest reason a remote kernel "does not start". With ``--kernel PATH`` the path is
checked (exists, is a file, is executable; paths with spaces such as
``/Applications/Mathematica 7.app/Contents/MacOS/MathKernel`` are quoted for the remote
shell). Without it, one remote round trip lists ``WolframKernel``, ``MathKernel``,
``wolfram`` and ``math`` on the remote PATH and every kernel in the standard install
locations (see :mod:`mkdoctor.kernel` for the paths and their sources), with the version
the path encodes (the cheap way; MK402 asks the kernel for ``$Version``). The newest is
chosen.

Facts: ``kernel`` (the path), ``version`` (from the path, may be empty), ``installs``
(every install found: ``[{"path", "version", "resolved"}]``), ``os`` (``uname -s``).
"""

from __future__ import annotations

import shlex

from mkdoctor.kernel import (Discovery, choose, discovery_script, ensure_login, non_posix_shell,
                           parse_discovery, where_we_look)
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped


def _facts(found: Discovery, kernel: str, version: str) -> dict:
    return {
        "kernel": kernel,
        "version": version,
        "installs": [{"path": i.path, "version": i.version, "resolved": i.resolved}
                     for i in found.installs],
        "os": found.uname,
    }


def run(ctx) -> Result:
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    given = ctx.options.kernel
    limit = ctx.step_timeout(ctx.options.timeout * 2)
    done = ctx.ssh.run(discovery_script(given), limit)
    if done.exit_code is None:
        text = (done.stderr or done.stdout).strip()
        if done.timed_out:
            return skipped(f"skipped: the remote search did not finish within {limit:g} s",
                           "re-run with a longer --timeout")
        shown = [text[-300:]] if text else []
        if non_posix_shell(text):
            return skipped(
                "skipped: the remote login shell is cmd.exe or PowerShell (Windows OpenSSH's "
                "default), not a POSIX sh: mkdoctor's remote checks cannot run there",
                "use a Windows host whose ssh login shell is a POSIX sh (Git Bash, Cygwin, "
                "WSL: set OpenSSH's DefaultShell), or run the kernel on a Linux or macOS host; "
                "see mkdoctor explain MK401", shown, shell="not-posix")
        return skipped(
            "skipped: the remote shell did not run the search (is the remote host Windows "
            "without a POSIX sh?)",
            "give the kernel's path with --kernel PATH, e.g. --kernel "
            "'C:\\Program Files\\Wolfram Research\\Mathematica\\14.1\\WolframKernel.exe'",
            shown,
        )
    found = parse_discovery(done.stdout)
    details = [f"remote OS: {found.uname or 'unknown (uname failed)'}"]
    if found.uname in ("", "?") or found.uname.upper().startswith(("MINGW", "MSYS", "CYGWIN", "WINDOWS")):
        details.append("a Windows host: only POSIX-shell paths (/c/Program Files/...) were searched")
    others = [f"  {i.describe()}" for i in found.installs]
    best = choose(found.installs)
    alt = [i for i in found.installs if i is not best]
    how = ("choose another with --kernel PATH (or in mkdoctor setup), e.g. --kernel "
           + shlex.quote(alt[0].path) if alt else "")

    if given is not None:
        state = found.given_state or "missing"
        g = found.given
        if state == "ok" and g is not None:
            details.append(f"given: {g.describe()}")
            if others:
                details += ["all installs found:"] + others
            return passed(f"{given}: executable" + (f", version {g.version}" if g.version else ""),
                          details, **_facts(found, given, g.version))
        problem = {
            "missing": "does not exist on the remote host",
            "dir": "is a directory, not the kernel executable",
            "noexec": "is not executable",
        }.get(state, state)
        if state == "noexec":
            fix = f"make it executable on the remote host: chmod a+x {shlex.quote(given)}"
        elif best is not None:
            fix = f"use the kernel that exists: --kernel {shlex.quote(best.path)}"
        elif state == "dir":
            fix = (f"give the executable inside it, e.g. --kernel "
                   f"{shlex.quote(given.rstrip('/') + '/Executables/WolframKernel')}")
        else:
            fix = ("find the kernel on the remote host (ls /usr/local/Wolfram/*/*/Executables) "
                   "and pass its full path with --kernel PATH")
        if others:
            details += ["installs found in the standard places:"] + others
        return failed(f"--kernel {given} {problem}", fix, details,
                      **_facts(found, "", ""), reason=state)

    if best is None:
        return failed(
            "no Wolfram kernel found on the remote host",
            "install Mathematica or the Wolfram Engine on the remote host, or give the "
            "kernel's full path with --kernel PATH (on the remote host: "
            "ls -d /usr/local/Wolfram/*/*/Executables /opt/Wolfram/*/*/Executables)",
            details + ["looked in:"] + [f"  {w}" for w in where_we_look()],
            **_facts(found, "", ""), reason="not-found",
        )
    details.append(f"chosen: {best.describe()}")
    if len(found.installs) > 1:
        details += ["all installs found:"] + others + [how]
        if any(not i.version for i in found.installs):
            details.append("an install whose version cannot be read from its path counts as "
                           "the oldest; MK402 asks the chosen kernel for $Version")
    summary = f"{best.path}" + (f" (version {best.version})" if best.version else " (version unknown)")
    if len(found.installs) > 1:
        summary += f"; {len(found.installs)} installs found, the newest chosen"
    return passed(summary, details, **_facts(found, best.path, best.version))


CHECK = Check(
    id="MK401",
    name="kernel-found",
    group="kernel",
    title="the kernel executable on the remote host (given, or discovered in the standard install paths), and its version",
    run=run,
    needs=("MK304",),
    after=(),
    preconditions=(needs_target,),
)
