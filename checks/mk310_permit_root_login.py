"""MK310 permit-root-login: the remote sshd's effective ``PermitRootLogin``.

``no`` passes; ``prohibit-password`` (printed ``without-password`` by older sshd),
``forced-commands-only`` warn (root may still log in with a key); ``yes`` fails (root may
log in with a password). The remote kernel never needs root: a host that lets root log in
over SSH is one leaked key or guessed password away from being taken over, and a kernel
started as root would run the notebook's code as root.

The value is the one sshd applies to a root login from our address (``Match`` blocks
included), from the server's own ``sshd -T`` when we may run it, else from evaluating the
configuration files (checks/sshd_config.py); the report names the source and the file and
line that set it. Values: sshd_config(5), PermitRootLogin.
"""

from __future__ import annotations

from mkdoctor.model import Check, Result, needs_target, skipped
from mkdoctor.openssh.sshd_config import root_login_verdict, to_result
from mkdoctor.openssh.session import RemoteUnavailable

# How a changed sshd configuration is applied on the server (Debian/Ubuntu call the
# service "ssh", Red Hat/Fedora/SUSE/Arch "sshd").
RESTART_REMOTE = "sudo systemctl reload ssh (or sshd)"


def unavailable(exc: Exception) -> Result:
    return skipped(f"skipped: {exc}", "fix MK304 passwordless-login first")


def unreadable(error: str, cfg_source: str) -> Result:
    return skipped(
        f"skipped: could not check the sshd configuration: {error}",
        "allow reading it (sudo chmod 644 /etc/ssh/sshd_config) or let this user run "
        "'sudo -n sshd -T', or give the right file with --sshd-config PATH",
        [f"source: {cfg_source}"],
    )


def run(ctx) -> Result:
    from mkdoctor.sshd_remote import effective_sshd_config

    try:
        cfg = effective_sshd_config(ctx, user="root")
    except RemoteUnavailable as exc:
        return unavailable(exc)
    if cfg.error:
        return unreadable(cfg.error, cfg.source)
    verdict = root_login_verdict(cfg, RESTART_REMOTE)
    return to_result(verdict, cfg, permitrootlogin=cfg.get("permitrootlogin"),
                     origin=cfg.origin.get("permitrootlogin"), source=cfg.source)


CHECK = Check(
    id="MK310",
    name="permit-root-login",
    group="server",
    title="the remote sshd's effective PermitRootLogin is no",
    run=run,
    needs=("MK304",),
    after=(),
    preconditions=(needs_target,),
)
