"""Step 5: the host key (MK301, MK302; recorded only after the fingerprint is confirmed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mkdoctor.options import Target, UsageError
from mkdoctor.wizard import remote
from mkdoctor.wizard.flow import StepFailed

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("The host key")
    res = f.run_checks(["MK301", "MK302"], f.remote_options(), Target(st.alias))
    for cid in ("MK301", "MK302"):
        if res[cid].status.value in ("fail", "error"):
            raise StepFailed(f"{cid}: {res[cid].summary}; fix: {res[cid].fix}")
    run = f.runner()
    cfg = remote.ssh_g(run, st.alias, st.staged)
    known = remote.recorded_keys(run, cfg)
    if any(e.marker != "revoked" for e in known):
        # Recorded already: ssh itself checks that key at step 6's login (the managed
        # block has StrictHostKeyChecking), so the scan that says "unchanged" runs beside
        # the login instead of before it; step 6 judges it before anything else
        # (before a password could be typed).
        f.background("host-key", lambda: remote.probe_host_key(run, cfg, f.opts.timeout,
                                                               st.alias, st.staged, known))
        st.host_key_pending = True
        f.say("  already in known_hosts: compared with the server's at the login (step 6)")
        return
    judge(f, remote.probe_host_key(run, cfg, f.opts.timeout, st.alias, st.staged, known))


def settle(f: Flow) -> None:
    """Step 6: the host key read beside the login (:func:`run`), judged now."""
    st = f.state
    if not st.host_key_pending:
        return
    st.host_key_pending = False
    state = f.collected("host-key")
    if state is None:  # it could not run beside: read it now
        run = f.runner()
        cfg = remote.ssh_g(run, st.alias, st.staged)
        state = remote.probe_host_key(run, cfg, f.opts.timeout, st.alias, st.staged)
    judge(f, state)


def judge(f: Flow, state) -> None:  # noqa: ANN001 - remote.HostKeyState
    """Say what the host key is and record it once confirmed; stop on a changed key."""
    fp = state.fingerprint
    if state.verdict == "known":
        f.say(f"  known and unchanged: {state.key.keytype} {fp}")
        return
    if state.verdict == "unscannable":
        raise StepFailed(f"cannot read the host key of {state.name}: {state.error}")
    if state.verdict in ("changed", "revoked", "other-types"):
        raise StepFailed(
            f"the host key of {state.name} does NOT match the one recorded "
            f"({state.verdict}; the server now shows {fp}). This can be a man-in-the-middle "
            "attack. Never accept it blindly: ask the server's administrator for the new "
            f"fingerprint; only then remove the old entry: ssh-keygen -R '{state.name}'")
    if state.verdict == "cert-authority":
        f.say("  the host is vouched for by a @cert-authority line; nothing to record")
        return
    f.say(f"  the host key of {state.name} is not known yet:")
    f.say(f"    {state.key.keytype} {fp}")
    f.say("  Compare it with the server's own (on the server: ssh-keygen -lf "
             "/etc/ssh/ssh_host_ed25519_key.pub), or ask its administrator.")
    given = f.args.accept_host_key
    if given:
        if given.rstrip("=") != fp.rstrip("="):
            raise UsageError(f"--accept-host-key {given} does not match the server's key {fp}: "
                             "not recorded")
        ok = True
    elif f.ask.interactive:
        ok = f.ask.confirm(f"Is {fp} the fingerprint of {state.name}?", False,
                              "--accept-host-key")
    else:
        raise UsageError(f"the host key of {state.name} is unknown ({state.key.keytype} {fp}); "
                         f"after verifying it, give --accept-host-key {fp}")
    if not ok:
        raise StepFailed("the host key was not confirmed")
    path, backup = remote.record_host_key(state, f.journal.before_change)
    f.say(f"  recorded in {path}{' (hashed)' if state.hashed else ''}"
             + (f" (backup: {backup.name})" if backup else ""))
