"""MK310 permit-root-login: the remote sshd's effective ``PermitRootLogin``.

``no`` passes; ``prohibit-password`` (printed ``without-password`` by older sshd),
``forced-commands-only`` warn (root may still log in with a key); ``yes`` fails (root may
log in with a password). The remote kernel never needs root: a host that lets root log in
over SSH is one leaked key or guessed password away from being taken over, and a kernel
started as root would run the notebook's code as root.

The value is judged as an attacker meets it: for every connection a stranger could make
as root from an internet address (the plain one, and one built for each ``Match`` block
an attacker can match: mkdoctor.openssh.exposure), the worst is reported, naming the
block and the line that gives it. Values come from the server's own ``sshd -T -C`` when
we may run it (one ssh run for all the connections), else from evaluating the
configuration files (mkdoctor.openssh.sshd_config); the file and line always come from
the evaluation. Our own login's value (MK312 judges that one) does not matter here.
Values: sshd_config(5), PermitRootLogin.
"""

from __future__ import annotations

from mkdoctor.model import Check, Result, needs_target, skipped
from mkdoctor.openssh.hardening import RESTART_REMOTE
from mkdoctor.openssh.sshd_config import PolicyVerdict, root_login_verdict, to_result
from mkdoctor.openssh.session import RemoteUnavailable

__all__ = ["RESTART_REMOTE", "unavailable", "unreadable", "stranger_result"]


def unavailable(exc: Exception) -> Result:
    return skipped(f"skipped: {exc}", "fix MK304 passwordless-login first")


def unreadable(error: str, cfg_source: str) -> Result:
    return skipped(
        f"skipped: could not check the sshd configuration: {error}",
        "allow reading it (sudo chmod 644 /etc/ssh/sshd_config) or let this user run "
        "'sudo -n sshd -T', or give the right file with --sshd-config PATH",
        [f"source: {cfg_source}"],
    )


def stranger_result(verdict: PolicyVerdict, view, keyword: str, **facts) -> Result:
    """The result for the worst stranger connection: the summary names the Match block
    (file:line) that gives the value, the details the connection and how many were tried."""
    from mkdoctor.openssh.exposure import describe

    j, cfg = view.judged, view.cfg
    conn = j.candidate.conn
    said = describe(j, f"{cfg_name(keyword)} {cfg.get(keyword)}")
    summary = f"{verdict.summary}; {said}" if verdict.status != "pass" or j.block else verdict.summary
    origin = cfg.origin.get(keyword, "default")
    details = (f"worst of {view.candidates} connection(s) a stranger could make (every Match "
               f"block considered): sshd -T -C {conn.spec()} gives {keyword} "
               f"{cfg.get(keyword)} (from {origin})",)
    details += tuple(f"note: {n}" for n in view.notes)
    if view.dropin_loses and verdict.status != "pass":
        details += (f"note: a line in mkdoctor's drop-in would not win: {view.dropin_loses}",)
    verdict = PolicyVerdict(verdict.status, summary, verdict.fix, details + verdict.details)
    return to_result(verdict, cfg, connection=conn.spec(), stranger_connections=list(view.specs),
                     dropin_loses=view.dropin_loses, block=j.block.label if j.block else "",
                     origin=cfg.origin.get(keyword), source=cfg.source, **facts)


def cfg_name(keyword: str) -> str:
    from mkdoctor.openssh.hardening import spelled

    return spelled(keyword)


def run(ctx) -> Result:
    from mkdoctor.sshd_remote import stranger_view

    try:
        view = stranger_view(ctx, "root")
    except RemoteUnavailable as exc:
        return unavailable(exc)
    cfg = view.cfg
    if cfg.error:
        return unreadable(cfg.error, cfg.source)
    verdict = root_login_verdict(cfg, RESTART_REMOTE)
    return stranger_result(verdict, view, "permitrootlogin",
                           permitrootlogin=cfg.get("permitrootlogin"))


CHECK = Check(
    id="MK310",
    name="permit-root-login",
    group="server",
    title="the remote sshd's effective PermitRootLogin for a stranger's root login is no",
    run=run,
    needs=("MK304",),
    after=(),
    preconditions=(needs_target,),
    fix_hints=(
        ("", "set PermitRootLogin no in sshd"),
    ),
)
