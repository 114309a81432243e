"""MK401 kernel-found: the kernel executable on the remote host, and its version.

The front end's launch command names the kernel on the remote host; a wrong path is the
commonest reason a remote kernel "does not start". With ``--kernel PATH`` the path is
read exactly as the remote login shell of the launch command reads it
(:class:`mkdoctor.kernel.KernelPath`: absolute, ``~/``, ``~user/``, relative to the home
directory, or a bare name looked up in that shell's PATH — not in the home directory),
then checked (exists, is a file, is executable, is not ``wolframscript`` or a front end;
paths with spaces such as ``/Applications/Mathematica 7.app/Contents/MacOS/MathKernel``
are quoted for the remote shell). A kernel that only ``module load`` puts on PATH
(environment modules, Lmod) is found through the module system. Without it, one remote round trip lists ``WolframKernel``, ``MathKernel``,
``wolfram`` and ``math`` on the remote PATH and every kernel in the standard install
locations (see :mod:`mkdoctor.kernel` for the paths and their sources), with the version
the path encodes (the cheap way; MK402 asks the kernel for ``$Version``). The newest is
chosen.

Facts: ``kernel`` (the absolute path the launch command runs), ``kernel_as_typed``,
``kernel_how`` (absolute, home-relative, tilde, path-lookup, module), ``module`` and
``module_init`` (the module to load, the script that defines ``module``), ``kernel_target``
(symlinks resolved), ``siblings`` (kernel executables beside it), ``modules``, ``version`` (from the path, may be empty), ``installs``
(every install found: ``[{"path", "version", "resolved"}]``), ``os`` (``uname -s``).
"""

from __future__ import annotations

import shlex

from mkdoctor.kernel import (PATH_NAMES, Discovery, KernelPath, choose,
                             discovery_script, ensure_login, lookalike, non_posix_shell,
                             parse_discovery, version_key, where_we_look)
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped


def _facts(found: Discovery, kernel: str, version: str,
           reading: "KernelPath | None" = None) -> dict:
    facts = (reading.facts() if reading is not None else
             KernelPath(kernel, kernel, "absolute").facts() if kernel else
             {"kernel": "", "kernel_as_typed": "", "kernel_how": "", "module": "",
              "module_init": "", "kernel_target": ""})
    return {
        **facts,
        "version": version,
        "siblings": [p for _, p in found.reading.siblings],
        "modules": [{"module": m.module, "path": m.path, "init": m.init}
                    for m in found.reading.modules],
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
    try:
        script = discovery_script(given)
    except ValueError as exc:
        return failed(f"--kernel {given}: {exc}",
                      "give the kernel's absolute path, ~/PATH, or a name on the remote PATH",
                      reason="unreadable")
    done = ctx.ssh.run(script, limit)
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
    fakes = [i for i in found.installs if lookalike(i.path, i.resolved)]
    found.installs = [i for i in found.installs if i not in fakes]
    for i in fakes:
        details.append(f"not a kernel, left out: {i.path} (-> {i.resolved}): "
                       f"{lookalike(i.path, i.resolved)}")
    if found.uname in ("", "?") or found.uname.upper().startswith(("MINGW", "MSYS", "CYGWIN", "WINDOWS")):
        details.append("a Windows host: only POSIX-shell paths (/c/Program Files/...) were searched")
    others = [f"  {i.describe()}" for i in found.installs]
    best = choose(found.installs)
    alt = [i for i in found.installs if i is not best]
    how = ("choose another with --kernel PATH (or in mkdoctor setup), e.g. --kernel "
           + shlex.quote(alt[0].path) if alt else "")

    if given is not None:
        return _given(ctx, given, found, best, others, details)

    modules = sorted(found.reading.modules, key=lambda m: version_key(m.version))
    if best is None and modules:
        mk = modules[-1]
        reading = mk.reading(mk.path)
        details += [f"not on the plain PATH of a non-interactive ssh command; the module system "
                    f"({mk.init}) provides it:",
                    *(f"  module {m.module}: {m.path}" for m in modules),
                    f"chosen: module {mk.module}",
                    f"the launch command loads it first: {module_fragment(reading)}"]
        return passed(f"{mk.path} from module {mk.module}"
                      + (f" (version {mk.version})" if mk.version else " (version unknown)"),
                      details, **_facts(found, mk.path, mk.version, reading))
    if best is None and found.reading.hidden_modules:
        hidden = found.reading.hidden_modules
        return failed(
            f"no Wolfram kernel on PATH; module {hidden[0]} exists but loads only after other "
            "modules (a module hierarchy)",
            f"on the remote host, module spider {hidden[0]} names the modules to load first; "
            "put the loads and the kernel in a wrapper script (module load A B "
            f"{hidden[0]}; exec WolframKernel \"$@\") and give it with --kernel ~/math.sh "
            "(see docs/guides/kernels.md)",
            details + [f"module spider lists: {', '.join(hidden)}"],
            **_facts(found, "", ""), reason="module-hierarchy")
    if best is None:
        if found.reading.module_systems:
            details.append("the module system (" + ", ".join(found.reading.module_systems)
                           + ") has no mathematica/wolfram module that provides a kernel "
                           "(module -t avail)")
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


def module_fragment(reading: KernelPath) -> str:
    from mkdoctor.launch import kernel_prefix

    return " ".join(shlex.quote(w) for w in kernel_prefix(reading.module or "", reading.module_init or "")
                    + [reading.resolved])


def _given(ctx, given: str, found: Discovery, best, others: list[str], details: list[str]) -> Result:
    r = found.reading
    state = r.state or "missing"
    g = found.given
    if state == "ok" and g is not None:
        reading = KernelPath(given, r.path, r.how, target=r.target)
        fake = lookalike(r.path, r.target)
        if fake:
            sib = [p for n, p in r.siblings if n in ("WolframKernel", "MathKernel", "math")]
            fix = (f"use the kernel beside it: --kernel {shlex.quote(sib[0])}" if sib else
                   "give the kernel executable (WolframKernel, MathKernel or math in the "
                   "installation's Executables directory) with --kernel PATH")
            return failed(f"{given}: {fake}", fix,
                          details + [f"{r.path}" + (f" -> {r.target}" if r.target != r.path else ""),
                                     "the front end's launch command needs a kernel that speaks "
                                     "WSTP (-wstp); this program does not"]
                          + [f"beside it: {p}" for _, p in r.siblings],
                          **_facts(found, "", ""), reason="not-a-kernel")
        details.append(f"given: {given}")
        if r.how != "absolute":
            details.append(f"the remote login shell reads it as {r.path} ({r.how}); the launch "
                           "command runs that path")
        if r.target != r.path:
            details.append(f"-> {r.target}")
        if others:
            details += ["all installs found:"] + others
        return passed(f"{given}: executable" + (f" ({r.path})" if r.path != given else "")
                      + (f", version {g.version}" if g.version else ""),
                      details, **_facts(found, r.path, g.version, reading))
    if state == "notfound":
        mods = [m for m in found.reading.modules if given in PATH_NAMES]
        if mods:
            mk = sorted(mods, key=lambda m: version_key(m.version))[-1]
            reading = mk.reading(given)
            details += [f"{given} is not on the PATH of a non-interactive ssh command; "
                        f"module {mk.module} provides {mk.path}",
                        f"the launch command loads it first: {module_fragment(reading)}"]
            return passed(f"{given}: from module {mk.module} ({mk.path})", details,
                          **_facts(found, mk.path, mk.version, reading))
        why = ("not found on the remote host: the launch command's shell looks a name without "
               "a '/' up in PATH, not in the home directory")
        if r.home_hint:
            fix = f"it is in the home directory ({r.home_hint}): use --kernel ./{given}"
            details.append(f"found in the home directory, not on PATH: {r.home_hint}")
        elif best is not None:
            fix = f"use the kernel that exists: --kernel {shlex.quote(best.path)}"
        else:
            fix = ("give the kernel's full path with --kernel PATH (on the remote host: "
                   "ls -d /usr/local/Wolfram/*/*/Executables)")
        if found.reading.module_systems and not found.reading.modules:
            details.append("the module system (" + ", ".join(found.reading.module_systems)
                           + ") has no mathematica/wolfram module that provides a kernel")
        if others:
            details += ["installs found in the standard places:"] + others
        return failed(f"{given}: {why}", fix, details, **_facts(found, "", ""), reason="not-on-path")
    problem = {
        "missing": "does not exist on the remote host",
        "dir": "is a directory, not the kernel executable",
        "noexec": "is not executable",
    }.get(state, state)
    where = f" ({r.path})" if r.path and r.path != given else ""
    if state == "noexec":
        fix = f"make it executable on the remote host: chmod a+x {shlex.quote(r.path or given)}"
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
    return failed(f"--kernel {given}{where} {problem}", fix, details,
                  **_facts(found, "", ""), reason=state)


CHECK = Check(
    id="MK401",
    name="kernel-found",
    group="kernel",
    title="the kernel executable on the remote host (given, or discovered in the standard install paths), and its version",
    run=run,
    needs=("MK304",),
    after=(),
    preconditions=(needs_target,),
    fix_hints=(
        ("", "install the kernel, or give --kernel"),
        ("not-a-kernel", "give WolframKernel itself (--kernel)"),
        ("module-hierarchy", "a wrapper that loads the modules"),
        ("unreadable", "give a valid --kernel path"),
    ),
)
