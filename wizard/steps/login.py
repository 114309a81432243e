"""Step 6: logging in with the key (MK304), installing it first when needed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from mkdoctor import facts
from mkdoctor.options import Target, UsageError
from mkdoctor.wizard import remote
from mkdoctor.wizard.flow import StepFailed
from mkdoctor.wizard.steps import host_key

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("Logging in with the key (MK304)")
    res = f.run_checks(["MK304"], f.remote_options(), Target(st.alias), show=False)
    host_key.settle(f)  # the host key read beside this login: judged first
    reason = facts.LOGIN_FAILURE.of(res["MK304"], "")
    if res["MK304"].status.value == "pass" or reason not in ("permission-denied", ""):
        from mkdoctor.registry import get

        f.show(get("MK304"), res["MK304"])
        if res["MK304"].status.value == "pass":
            return
        raise StepFailed(f"MK304: {res['MK304'].summary}; fix: {res['MK304'].fix}")
    # The expected case for a key the server has not seen: say so plainly, then offer
    # to install it (MK304's own fix would point back at this very setup).
    f.say(f"  {st.target.display} does not accept this key yet "
             f"(ssh: {res['MK304'].summary.split(': ', 1)[-1]}): it has to be installed once")
    a = f.args
    t = st.target
    pub = Path(str(st.identity) + ".pub")
    if f.ask.interactive:
        ok = f.ask.confirm(
            f"Install the public key {pub.name} on {t.display}? ssh asks for your password "
            "there, typed into this terminal (never stored)", True, "--install-key")
        if not ok:
            raise StepFailed(f"the key is not installed; install it with: ssh-copy-id -i "
                             f"{pub} {t.display}, then run mkdoctor setup again")
    elif not a.install_key:
        raise UsageError(f"the key is not accepted by {t.display} yet: give --install-key "
                         f"(uses a login that already works without a prompt), or run "
                         f"ssh-copy-id -i {pub} {t.display} first")
    ok, message, note = install(f, t)
    if not ok:
        raise StepFailed(f"installing the key failed: {message}; install it by hand: "
                         f"ssh-copy-id -i {pub} {t.display}")
    f.say(f"  {message}")
    if note:
        f.say(f"  note: {note}")
    res = f.run_checks(["MK304"], f.remote_options(), Target(st.alias))
    if res["MK304"].status.value != "pass":
        raise StepFailed(f"MK304 still fails after installing the key: {res['MK304'].summary}; "
                         f"fix: {res['MK304'].fix}")


def install(f: Flow, t: Target) -> tuple[bool, str, str]:
    """The install's one login (the password, typed at ssh's own prompt, or unattended a
    login that already works), a ControlMaster that the lookup of AuthorizedKeysFile and
    the append share; ended before the key's own session starts."""
    from mkdoctor.context import Context
    from mkdoctor.openssh.session import SSHClient
    from mkdoctor.proc import ProcessRunner

    opts = copy.copy(f.opts)
    opts.ssh_config = Path(f.args.ssh_config).expanduser() if f.args.ssh_config else None
    opts.identity = None
    client = SSHClient(t.host, ProcessRunner(), user=t.user, port=t.port,
                       ssh_config=opts.ssh_config, connect_timeout=opts.timeout)
    try:
        if f.ask.interactive:
            login = client.login_with_prompt(180)
        else:
            login = client.login(opts.timeout * 2 + 2)
        if not login.ok:
            last = (login.stderr.strip().splitlines() or [f"ssh exited with {login.returncode}"])[-1]
            return False, last, ""
        ctx = Context(opts, t, session=client)
        try:
            return remote.install_through(client, ctx, f.state.public_line, opts.sshd_config,
                                          ctx.step_timeout(opts.timeout * 2))
        finally:
            ctx.close()
    finally:
        client.close()
