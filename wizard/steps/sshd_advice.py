"""Step 11: the remote SSH server's advice (MK310, MK311), applied when asked."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from mkdoctor.options import Target

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    f.state.hardened = advise(f)


def advise(f: Flow) -> bool:
    """Advice, and the change if asked for. False only when an apply was asked for
    and did not succeed (:attr:`hardening_error` says why): the run then ends with
    exit status 1 although the files are written."""
    st = f.state
    f.step("The remote SSH server (MK310, MK311)")
    from mkdoctor.wizard import security

    opts = copy.copy(f.opts)
    opts.ssh_config = Path(f.final_ssh_config()) if f.final_ssh_config() else None
    opts.identity = None
    res = f.collected("sshd")  # read in step 9 while the kernel started
    if res and all(r.status.value in ("pass", "warn", "fail") for r in res.values()):
        for check in _checks(res):
            f.show_result(set(), check, res[check.id])
    else:  # not read before, or it could not be: read it now (the written files)
        res = f.run_checks(["MK310", "MK311"], opts, Target(st.alias))
    advice = security.advice(res, st.user)
    kept = security.kept_for_root(res, st.user)
    if kept:
        f.say(f"  note: {kept}")
    if not advice:
        f.say("  nothing to change")
        return True
    f.say(advice.text)
    apply = f.args.apply_sshd_hardening
    if not apply and f.ask.interactive:
        apply = f.ask.confirm("Apply this on the remote host now (sudo asks for your "
                                 "password there)?", False, "--apply-sshd-hardening")
    elif not apply:
        f.say("  not applied (--apply-sshd-hardening applies it)")
    if not apply:
        return True
    st.applying = True
    ok, message = security.apply(advice, st.alias, opts.ssh_config, f.ask.interactive,
                                 sshd_config=str(f.opts.sshd_config))
    st.applying = False
    st.applied = ok
    f.say(f"  {message}")
    if not ok:
        st.hardening_error = message
        return False
    f.say("  after the change:")
    after = f.run_checks(["MK310", "MK311"], opts, Target(st.alias))
    if security.advice(after, st.user):
        st.hardening_error = ("applied, but MK310/MK311 still do not pass (see above): "
                                "another file sets these values first")
        return False
    return True


def _checks(res: dict) -> list:
    from mkdoctor.registry import all_checks

    return [c for c in all_checks() if c.id in res]
