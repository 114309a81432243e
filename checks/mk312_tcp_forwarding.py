"""MK312 tcp-forwarding: in tunnel mode the remote sshd must allow our reverse forwards.

Tunnel mode runs ``ssh -R p1:127.0.0.1:p1 -R p2:127.0.0.1:p2``: the remote sshd listens on
the two link ports and the kernel connects to them. sshd refuses (and ssh, with
ExitOnForwardFailure, exits) when, in the effective configuration for our user and
address (sshd_config(5)):

- ``DisableForwarding yes`` (all forwarding off, whatever else says);
- ``AllowTcpForwarding no`` or ``local`` (only ``yes``/``all`` and ``remote`` allow -R);
- ``PermitListen`` does not list the port: ``none``; or entries ``[host:]port`` where the
  port (or ``*``) and the host pattern do not match. ``ssh -R port:...`` without a bind
  address asks to listen on "localhost" (channels.c ``channel_rfwd_bind_host``), so
  ``PermitListen 127.0.0.1:31415`` does *not* allow it, ``PermitListen 31415`` or
  ``localhost:31415`` does (channels.c ``remote_open_match``).
"""

from __future__ import annotations

from mkdoctor.model import Check, Result, needs_target, only_mode
from mkdoctor.openssh.sshd_config import EffectiveConfig, PolicyVerdict, listen_permitted, setting_fix, to_result
from mkdoctor.openssh.session import RemoteUnavailable
from mkdoctor.checks.mk310_permit_root_login import RESTART_REMOTE, unavailable, unreadable


def forwarding_verdict(cfg: EffectiveConfig, ports: tuple[int, ...]) -> PolicyVerdict:
    """Whether remote forwards to ``ports`` are allowed (pure)."""
    shown = " and ".join(str(p) for p in ports)
    if cfg.get("disableforwarding") == "yes":
        return PolicyVerdict("fail", f"DisableForwarding yes turns off all forwarding "
                       f"({cfg.where('disableforwarding')})",
                       setting_fix("DisableForwarding", "no", cfg, RESTART_REMOTE))
    allow = cfg.get("allowtcpforwarding")
    if allow in ("no", "local"):
        return PolicyVerdict("fail", f"AllowTcpForwarding {allow} refuses the reverse forwards of tunnel "
                       f"mode ({cfg.where('allowtcpforwarding')})",
                       setting_fix("AllowTcpForwarding", "remote", cfg, RESTART_REMOTE)
                       + " ('remote' allows only ssh -R; 'yes' allows both directions)")
    permit = cfg.get("permitlisten")
    refused = [p for p in ports if not listen_permitted(permit, p)]
    if refused:
        wanted = " ".join(f"localhost:{p}" for p in ports)
        return PolicyVerdict("fail", f"PermitListen {permit} does not allow listening on "
                       f"{' and '.join(map(str, refused))} ({cfg.where('permitlisten')})",
                       setting_fix("PermitListen", wanted, cfg, RESTART_REMOTE)
                       + " (ssh -R asks to listen on 'localhost', so 127.0.0.1:PORT entries "
                       "do not match)",
                       (f"ssh -R {ports[0]}:127.0.0.1:{ports[0]} asks the server to listen on "
                        f"localhost:{ports[0]}",))
    return PolicyVerdict("pass", f"reverse forwards to ports {shown} are allowed "
                   f"(AllowTcpForwarding {allow}, PermitListen {permit})")


def run(ctx) -> Result:
    from mkdoctor.sshd_remote import effective_sshd_config

    try:
        cfg = effective_sshd_config(ctx)
    except RemoteUnavailable as exc:
        return unavailable(exc)
    if cfg.error:
        return unreadable(cfg.error, cfg.source)
    verdict = forwarding_verdict(cfg, tuple(ctx.link_ports))
    return to_result(verdict, cfg, allowtcpforwarding=cfg.get("allowtcpforwarding"),
                     disableforwarding=cfg.get("disableforwarding"),
                     permitlisten=cfg.get("permitlisten"), source=cfg.source)


CHECK = Check(
    id="MK312",
    name="tcp-forwarding",
    group="server",
    title="tunnel mode: the remote sshd allows the reverse forwards",
    run=run,
    needs=("MK304",),
    after=("MK103",),
    preconditions=(needs_target, only_mode("tunnel")),
    fix_hints=(
        ("", "allow TCP forwarding in sshd"),
    ),
)
