"""Port-forwarding permissions: ``PermitListen``/``PermitOpen`` (sshd_config) and the
``permitlisten=``/``permitopen=`` key options, parsed and matched as sshd does. Pure.

- Syntax: servconf.c (``PermitListen``/``PermitOpen``: misc.c ``hpdelim``, ``:`` only) and
  auth-options.c ``handle_permit`` (key options: misc.c ``hpdelim2``, ``:`` or ``/``); the
  host ends at the FIRST delimiter, so ``a:b:22`` is host ``a`` with the bad port ``b:22``.
  A bare port means ``*:port`` for the listen permissions.
- Matching: channels.c ``remote_open_match``: the listen host asked for, lower-cased,
  against the entry's host pattern (match.c ``match_pattern``), and the port (``*`` any).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from mkdoctor.openssh.patterns import match_pattern
from mkdoctor.openssh.tokens import hpdelim, valid_port


def permit_error(value: str, listen: bool, key_option: bool = False) -> Optional[str]:
    """Why sshd refuses one ``host:port`` permission, or None. ``listen``: a listen
    permission (a bare port is allowed); ``key_option``: the authorized_keys syntax."""
    if listen and ":" not in value:
        value = "*:" + value
    host, port = hpdelim(value, slash=key_option)
    if host is None:
        return "invalid permission hostname" if key_option else "missing host"
    if port is None or (port != "*" and valid_port(port) is None):
        return "invalid permission port" if key_option else "bad port number"
    return None


def listen_permitted(permitlisten: Union[str, Sequence[str]], port: int,
                     listen_host: str = "localhost") -> bool:
    """Does a listen permission list allow a remote forward on ``port``?
    ``permitlisten``: ``sshd -T``'s ``PermitListen`` value (a string: ``any``, ``none``
    or entries), or the ``permitlisten=`` values of a key (a list; empty: no limit).
    ``ssh -R port:host:hostport`` with no bind address asks to listen on "localhost"
    (channels.c ``channel_rfwd_bind_host``)."""
    words = permitlisten.split() if isinstance(permitlisten, str) else list(permitlisten)
    if not words or words == ["any"]:
        return True
    if words == ["none"]:
        return False
    for entry in words:
        if ":" not in entry:
            entry = "*:" + entry
        host, p = hpdelim(entry, slash=True)
        if host is None or p is None:
            continue
        if p != "*" and valid_port(p) != port:
            continue
        if match_pattern(listen_host.lower(), host):
            return True
    return False
