"""MK402 kernel-starts: the kernel starts and evaluates an expression within the timeout.

Runs ``KERNEL -noprompt -run EXPR`` on the remote host (``-noprompt``: no banner, no
prompts, no questions on startup errors; ``-run``: evaluate on startup —
reference.wolfram.com/language/ref/program/WolframKernel.html). KERNEL is MK401's reading
of the path (:func:`mkdoctor.kernel.read_kernel`: the absolute path the launch command
runs), started after ``module load`` when a module provides it, exactly as the launch
command does. EXPR prints a sentinel joined by the kernel itself, ``$Version``,
``$VersionNumber`` and ``$ProcessorCount``, then ``Exit[]``. Licence situations (no
password, not activated, activation limit, expired, all licence processes in use, a MathLM
server that cannot be reached — tested from the remote host), a crash (death by a
signal), a hang, and wolframscript behind a wrapper (recognised by its answer to
``-version``) each get their own cause and fix.

No kernel is ever left running on the server (it would hold a licence): the remote
wrapper (:func:`mkdoctor.kernel.start_script`) runs the kernel in its own process group and
kills the group after ``--kernel-timeout`` seconds (default 30, cut to the run's
deadline) or as soon as our ssh client goes away — we hold the session's stdin open, and
its end of file is the signal.

Facts: ``version`` ($Version), ``version_number``, ``major``, ``processor_count``,
``link_flag`` (``-mathlink`` before version 10, ``-wstp`` from 10 on; see mkdoctor/launch.py).
"""

from __future__ import annotations

import os
import secrets
import shlex

from mkdoctor.kernel import (ALONE_NOTE, KERNEL_BASENAMES, MATHLM_PORT, RUNNING_KERNELS_SCRIPT,
                             classify_run, early_reading, ensure_login, major_version,
                             mathpass_script, own_kernels, parse_mathpass, read_kernel,
                             run_expression, start_retrying_alone, start_script,
                             wolframscript_answer)
from mkdoctor.launch import link_flag
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped


def _held(ctx, script: str, timeout: float):
    """Run a :func:`start_script` with our end of its stdin held open while we wait (its
    end of file tells the remote watchdog to end the kernel)."""
    read_end, write_end = os.pipe()
    try:
        return ctx.ssh.run(script, timeout, stdin=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)  # EOF: the remote watchdog ends the kernel if it still runs


def _wolframscript(ctx, kernel: str, module: dict) -> str:
    """What ``KERNEL -version`` answers when that is wolframscript's answer, else ""."""
    done = _held(ctx, start_script(kernel, ["-version"], 5, **module), ctx.step_timeout(10))
    text = (done.stdout or "") + (done.stderr or "")
    if wolframscript_answer(text):
        return next(ln.strip() for ln in text.splitlines() if wolframscript_answer(ln))
    return ""


def run(ctx) -> Result:
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    # Beside MK401 (overlaps): an absolute --kernel path starts at once, while MK401 reads
    # it on the server; any other waits for MK401's reading.
    reading = early_reading(ctx)
    if reading is None:
        ctx.wait_result("MK401")
        reading = read_kernel(ctx)
    if reading is None:
        return skipped("skipped: no kernel path (MK401 kernel-found found none)",
                       "give the kernel's path with --kernel PATH")
    module = dict(module=reading.module or "", module_init=reading.module_init or "")
    (done, outcome, limit), again = start_retrying_alone(
        ctx, lambda attempt: _start(ctx, reading, module, attempt), lambda r: r[1].outcome)
    result = _judge(ctx, reading, module, outcome, done, limit)
    if again:
        result.details.insert(0, ALONE_NOTE)
    return result


def _start(ctx, reading, module: dict, attempt):
    """One start of the kernel with the test expression: (done, outcome, time limit)."""
    # Leave a few seconds of the deadline for ssh itself and the report.
    limit = min(ctx.options.kernel_timeout, max(1.0, ctx.remaining() - ctx.options.timeout - 2))
    token = secrets.token_hex(4)
    script = start_script(reading.resolved, ["-noprompt", "-run", run_expression(token)], limit,
                          **module)
    with own_kernels(ctx).running(attempt):
        done = _held(ctx, script, ctx.step_timeout(limit + ctx.options.timeout + 3))
    return done, classify_run(done.stdout, done.stderr, done.exit_code, token), limit


def _judge(ctx, reading, module: dict, outcome, done, limit: float) -> Result:
    """The result of one kernel start (``outcome``, classified from ``done``)."""
    kernel = reading.resolved
    q = shlex.quote(kernel)
    if reading.module:
        from mkdoctor.launch import kernel_prefix

        q = " ".join(shlex.quote(w) for w in kernel_prefix(reading.module, reading.module_init or "")
                     + [kernel])
    host = ctx.target.display
    shown = [f"  {line}" for line in outcome.evidence]
    by_hand = f"run it by hand to see what it says: ssh -t {host} {shlex.quote(q + ' -noprompt')}"
    if outcome.outcome == "no-answer":
        fake = _wolframscript(ctx, kernel, module)
        if fake:
            return failed(
                f"{reading.as_typed} is wolframscript (it answers -version with \"{fake}\"), "
                "not a WSTP kernel: the front end cannot start it",
                "use the kernel executable of the same installation: WolframKernel (or "
                "MathKernel, math) in the directory of the real wolframscript "
                f"(on the remote host: ls \"$(dirname \"$(readlink -f {q})\")\"); a wrapper script "
                "must exec WolframKernel \"$@\"",
                shown + [f"-version: {fake}"], reason="not-a-kernel")

    if outcome.outcome == "ok":
        major = major_version(outcome.version_number or outcome.version)
        flag = link_flag(outcome.version_number or outcome.version)
        details = [f"$Version: {outcome.version}", f"$ProcessorCount: {outcome.processor_count}",
                   f"link option for this version: {flag}"]
        return passed(
            f"the kernel answered: version {outcome.version_number or outcome.version}, "
            f"{outcome.processor_count} processors",
            details, version=outcome.version, version_number=outcome.version_number,
            major=major, processor_count=outcome.processor_count, link_flag=flag,
        )
    if outcome.outcome == "activation-limit":
        return failed(
            "the activation key has reached its limit of machines (Wolfram Engine activations)",
            "free an activation: deactivate the Engine on a machine you no longer use, or "
            "release it in your Wolfram Account (products page), then activate here: "
            f"ssh -t {host} wolframscript -activate",
            ["the kernel said:"] + shown, reason="activation-limit")
    if outcome.outcome == "activation":
        return failed(
            "the kernel (Wolfram Engine) is not activated on the remote host",
            f"activate it on the remote host: ssh -t {host} wolframscript -activate",
            ["the kernel said:"] + shown, reason="activation")
    if outcome.outcome == "licence-expired":
        return failed(
            "the kernel's licence (password) has expired",
            "renew the licence (a new password or activation key from your Wolfram Account or "
            "your site's administrator), then check it on the remote host: "
            f"ssh {host} {shlex.quote(q + ' -licenseinfo')}",
            ["the kernel said:"] + shown, reason="licence-expired")
    if outcome.outcome == "licence-processes":
        running = ctx.ssh.run(RUNNING_KERNELS_SCRIPT, ctx.step_timeout())
        procs = [ln.strip() for ln in running.stdout.splitlines() if ln.strip()]
        pids = " ".join(ln.split()[0] for ln in procs if ln.split()[0].isdigit())
        end = (f"end the ones you no longer need: ssh {host} kill {pids}" if pids else
               f"end kernels left running (yours elsewhere, or on other hosts of the same "
               f"MathLM server): ssh {host} pgrep -af 'WolframKernel|MathKernel'")
        return failed(
            "all licence processes are in use: the licence allows no further kernel",
            f"{end}; $MaxLicenseProcesses in a running kernel tells how many the licence "
            "allows (with MathLM: monitorlm SERVER lists who holds them)",
            ["the kernel said:"] + shown
            + (["your running kernels and front ends on the remote host:"]
               + [f"  {ln}" for ln in procs] if procs else []),
            reason="licence-processes", running=procs)
    if outcome.outcome in ("licence", "licence-server"):
        lic = ctx.ssh.run(mathpass_script(reading.target or kernel), ctx.step_timeout(8))
        files, servers = parse_mathpass(lic.stdout)
        down = [h for h, ok in servers if ok == "no"]
        extra = ([f"mathpass files: {', '.join(files)}"] if files else []) + [
            f"MathLM server {h}: port {MATHLM_PORT} " + {"yes": "reachable", "no": "NOT reachable",
                                                        "unknown": "not tested"}[ok]
            + " from the remote host" for h, ok in servers]
        if down:
            h = down[0]
            return failed(
                f"the licence server (MathLM) {h} named in mathpass cannot be reached from the "
                f"remote host (TCP port {MATHLM_PORT})",
                f"open TCP port {MATHLM_PORT} from the remote host to {h} (ask the network's "
                f"administrator; test on the remote host: nc -vz {h} {MATHLM_PORT}), or use the "
                "kernel on a network where the server is reachable (VPN); "
                f"{q} -lmverbose shows what the kernel tries",
                ["the kernel said:"] + shown + extra, reason="licence-server-unreachable",
                server=h, port=MATHLM_PORT)
        if outcome.outcome == "licence-server" or servers:
            return failed(
                "the licence server (MathLM) refused or did not answer",
                "check that the MathLM server named in mathpass is up and has a free licence "
                f"(monitorlm SERVER); look for kernels left running: ssh {host} pgrep -af Kernel",
                ["the kernel said:"] + shown + extra, reason="licence-server")
        # mathpass: one licence source per line, read top to bottom; a line "!server" names
        # a MathLM licence server (support.wolfram.com/112, "Structure of a Mathpass File
        # Referencing a MathLM Server"; reference.wolfram.com/language/tutorial/
        # RegistrationAndPasswords.html). The user's file is $UserBaseDirectory/Licensing/
        # mathpass, $UserBaseDirectory being ~/.Wolfram on Linux and ~/Library/Wolfram on
        # macOS (reference.wolfram.com/language/tutorial/ConfigurationFiles.html); older
        # versions used ~/.Mathematica (observed).
        return failed(
            "the kernel has no valid licence (password) for this computer",
            "activate it on the remote host: run the kernel once interactively "
            f"(ssh -t {host} {shlex.quote(q)}) and enter your activation key, or put a "
            "'!your-mathlm-server' line in its mathpass file (Linux: ~/.Wolfram/Licensing/"
            "mathpass; older versions: ~/.Mathematica/Licensing/mathpass)",
            ["the kernel said:"] + shown + extra, reason="licence")
    if outcome.outcome == "crash":
        return failed(
            f"the kernel crashed ({outcome.signal_name})",
            f"{by_hand}; check the remote host's free memory and disk (free -h; df -h ~) "
            "and reinstall the kernel if it keeps crashing",
            shown or ["(it printed nothing)"], reason="crash", signal=outcome.signal_name)
    if outcome.outcome == "hang":
        cut = limit < ctx.options.kernel_timeout  # what was left of the run's --deadline
        why = (f"timed out after {limit:g} s: the run's --deadline of {ctx.options.deadline:g} s"
               if cut else f"the kernel did not answer within {limit:g} s")
        more = (f"re-run with a longer --deadline (the kernel may take up to --kernel-timeout "
                f"{ctx.options.kernel_timeout:g} s)" if cut else
                f"{by_hand}; a licence server that does not answer makes it wait; a slow "
                "first start may need a longer --kernel-timeout")
        return failed(f"{why} (stopped; nothing left running)", more, shown, reason="hang",
                      timeout=limit)
    if outcome.outcome == "not-found":
        return failed(f"{kernel}: not found on the remote host",
                      "check the path (see MK401) or give --kernel PATH", shown, reason="not-found")
    if outcome.outcome == "not-executable":
        return failed(f"{kernel}: cannot be executed",
                      f"on the remote host: chmod a+x {q}", shown, reason="not-executable")
    if outcome.outcome == "error":
        if done.timed_out:
            return failed(f"no answer from the remote host within {limit:g} s",
                          "re-run with a longer --deadline or --kernel-timeout", shown,
                          reason="timeout")
        return skipped("skipped: the remote command did not report back (connection lost?)",
                       "re-run; see MK304 passwordless-login", shown)
    fix = by_hand
    if reading.name not in KERNEL_BASENAMES:  # a wrapper script or a renamed link
        fix = (f"{reading.as_typed} is not named like a kernel: if it is a wrapper script, it "
               "must pass its arguments on (exec /path/to/WolframKernel \"$@\"); " + by_hand)
    return failed(
        "the kernel started but did not evaluate the test expression",
        fix, shown or ["(it printed nothing)"], reason="no-answer")


CHECK = Check(
    id="MK402",
    name="kernel-starts",
    group="kernel",
    title="the kernel starts and evaluates an expression within the timeout; licence problems recognised",
    run=run,
    needs=("MK304", "MK401"),
    # MK401 runs at the same time for an absolute --kernel path (run() waits for it
    # otherwise); when it fails, this result becomes the skip that names it.
    overlaps=("MK401",),
    after=(),
    preconditions=(needs_target,),
    long_running=True,  # a kernel start
    fix_hints=(
        ("", "run the kernel by hand (see the fix)"),
        ("not-a-kernel", "give WolframKernel, not wolframscript"),
        ("activation", "activate the kernel"),
        ("activation-limit", "free an activation"),
        ("licence-expired", "renew the licence"),
        ("licence-processes", "end unused kernels"),
        ("licence-server-unreachable", "reach the licence server"),
        ("licence-server", "check the licence server"),
        ("licence", "activate the kernel (licence)"),
        ("hang", "run the kernel by hand, or more time"),
        ("timeout", "longer --deadline or --kernel-timeout"),
        ("not-found", "give the kernel's path (--kernel)"),
        ("not-executable", "chmod a+x the kernel"),
    ),
)
