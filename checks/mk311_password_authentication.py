"""MK311 password-authentication: password logins on a server reachable from the internet.

A password can be guessed; a key cannot. The link to the remote kernel only needs key
logins (MK304), so password logins are pure risk on a server that the internet can reach,
and bots try passwords on every such server all day.

Judged as an attacker meets it: the configuration for every connection a stranger could
make (any user, from an internet address, one connection built for each ``Match`` block
an attacker can match: mkdoctor.openssh.exposure), the worst reported with the block and
line that give it; a ``Match Address 10.0.0.0/8`` that turns passwords off for the LAN
does not make this pass. Password logins are on when that configuration has
``PasswordAuthentication yes``, or ``KbdInteractiveAuthentication yes`` with ``UsePAM
yes`` (PAM asks for the password through keyboard-interactive), unless every
``AuthenticationMethods`` list requires ``publickey`` (sshd_config(5)).

Reachable from the internet: the server has a public (global) address on an interface
(``ip -o addr``, else ``hostname -I``/``ifconfig``), or the address we connect to, or the
address it sees us coming from, is public (we reach it across the internet, through port
forwarding perhaps). Decision: password logins on a server seen only on a private network
pass, with a note and the fix, because they are no risk from the internet; they warn as
soon as the server is exposed. MK103's "reachable from the internet" is not consulted: it
judges the laptop, not the server (MK205 uses it for the laptop's own sshd).
"""

from __future__ import annotations

from typing import Optional

from mkdoctor.model import Check, Result, needs_target
from mkdoctor.openssh.sshd_config import password_verdict
from mkdoctor.openssh.session import RemoteUnavailable
from mkdoctor.checks.mk310_permit_root_login import (RESTART_REMOTE, stranger_result, unavailable,
                                                     unreadable)

# Address kinds (mkdoctor.netinfo.classify) that count as "on the internet". Documentation
# ranges (RFC 5737) stand for public addresses in test networks.
INTERNET_KINDS = ("public", "documentation")


def _kind(address: str) -> Optional[str]:
    from mkdoctor.netinfo import classify

    try:
        return classify(address)
    except ValueError:
        return None


def _shown(addresses: list[str]) -> str:
    """Addresses for a summary; a documentation range is said to be one (MK103 does not
    count it as public, so the two checks would otherwise seem to disagree)."""
    return ", ".join(a + (" (an RFC 5737/3849 test range, counted as public)"
                          if _kind(a) == "documentation" else "") for a in addresses)


def exposure(addresses: list[str], server_addr: str, client_addr: str) -> tuple[bool, str]:
    """Is the server reachable from the internet? (exposed, the reason) (pure)."""
    public = [a for a in addresses if _kind(a) in INTERNET_KINDS]
    if public:
        return True, f"the server has a public address: {_shown(public[:3])}"
    if server_addr and _kind(server_addr) in INTERNET_KINDS:
        return True, f"we reach the server at a public address ({_shown([server_addr])})"
    if client_addr and _kind(client_addr) in INTERNET_KINDS:
        return True, (f"the server sees us coming from a public address ({_shown([client_addr])}): "
                      "it is reachable across the internet (port forwarding?)")
    shown = ", ".join(addresses[:4]) or server_addr or "unknown"
    return False, (f"the server is only on private networks (addresses: {shown}; "
                   f"we connect to {server_addr or 'it'} from {client_addr or 'here'})")


def run(ctx) -> Result:
    from mkdoctor.sshd_remote import remote_facts, stranger_view

    try:
        view = stranger_view(ctx, "user")
        facts = remote_facts(ctx)
    except RemoteUnavailable as exc:
        return unavailable(exc)
    cfg = view.cfg
    if cfg.error:
        return unreadable(cfg.error, cfg.source)
    exposed, why = exposure(facts.addresses, facts.server_addr, facts.client_addr)
    verdict = password_verdict(cfg, exposed, why, RESTART_REMOTE)
    from mkdoctor.openssh.exposure import password_rank

    return stranger_result(verdict, view, password_rank(cfg)[1], exposed=exposed,
                           passwordauthentication=cfg.get("passwordauthentication"))


CHECK = Check(
    id="MK311",
    name="password-authentication",
    group="server",
    title="warns when the remote sshd allows password logins to a stranger and is reachable "
          "from the internet",
    run=run,
    needs=("MK304",),
    after=(),
    preconditions=(needs_target,),
    fix_hints=(
        ("", "set PasswordAuthentication no in sshd"),
    ),
)
