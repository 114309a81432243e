"""OpenSSH's pattern matching: match.c and addrmatch.c (and groupaccess.c). Pure.

- :func:`match_pattern`: ``*`` any run, ``?`` one character, everything else literal
  (``[`` too: these are not shell globs).
- :func:`match_pattern_list`: a comma list with ``!`` negation; a negated match wins.
- :func:`addr_match_list`: addrmatch.c ``addr_match_list``: CIDR networks or wildcard
  patterns; an entry with a bad mask (host bits set, a mask too long for the family) is
  an error (-2 in C: :class:`MatchSyntaxError` here) that makes sshd refuse a Match line
  and a ``from=`` option alike.
- :func:`match_host_and_ip`: match.c ``match_host_and_ip`` (authorized_keys ``from=``).
- :func:`groups_match`: groupaccess.c ``ga_match_pattern_list``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

def match_pattern(string: str, pattern: str) -> bool:
    """match.c ``match_pattern``: ``*`` any run, ``?`` one character, the rest literal."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, string, re.DOTALL) is not None


def match_pattern_list(string: str, patterns: str, dolower: bool = False) -> int:
    """match.c ``match_pattern_list``: 1 if a pattern matches, -1 if a negated (``!``)
    pattern matches (that wins), 0 otherwise."""
    got_positive = 0
    for sub in patterns.split(","):
        negated = sub.startswith("!")
        if negated:
            sub = sub[1:]
        if dolower:
            sub = sub.lower()
        if match_pattern(string, sub):
            if negated:
                return -1
            got_positive = 1
    return got_positive


class MatchSyntaxError(ValueError):
    """A list sshd refuses: ``code`` -1 for an empty entry, -2 for a bad network (the
    return values of addrmatch.c ``addr_match_list``)."""

    def __init__(self, message: str, code: int = -2) -> None:
        super().__init__(message)
        self.code = code


def _parse_ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_cidr(text: str):
    """addrmatch.c ``addr_pton_cidr``: (network) on success, None when not an address
    (then a wildcard pattern), MatchSyntaxError for a bad mask (sshd: -2)."""
    if len(text) >= 64:
        return None
    addr, slash, mask = text.partition("/")
    if slash:
        if not re.fullmatch(r"[0-9]+", mask) or int(mask) > 128:
            return None
    ip = _parse_ip(addr)
    if ip is None:
        return None
    bits = int(mask) if slash else ip.max_prefixlen
    if bits > ip.max_prefixlen:
        raise MatchSyntaxError(f"inconsistent mask length in {text!r}")
    try:
        return ipaddress.ip_network(f"{ip}/{bits}", strict=True)
    except ValueError:
        raise MatchSyntaxError(f"address {text!r} has host bits set for /{bits}") from None


def addr_match_list(addr: Optional[str], patterns: str) -> int:
    """addrmatch.c ``addr_match_list``: 1 match, -1 negated match, 0 no match; raises
    :class:`MatchSyntaxError` for an empty entry or a bad network."""
    ip = _parse_ip(addr) if addr is not None else None
    if addr is not None and ip is None:
        return 0
    result = 0
    for entry in patterns.split(","):
        negated = entry.startswith("!")
        if negated:
            entry = entry[1:]
        if entry == "":
            raise MatchSyntaxError("empty entry in address list", -1)
        net = parse_cidr(entry)
        if net is not None:
            found = ip is not None and ip.version == net.version and ip in net
        else:
            found = addr is not None and match_pattern(addr, entry)
        if found:
            if negated:
                return -1
            result = 1
    return result


def groups_match(groups: Optional[tuple[str, ...]], patterns: str) -> bool:
    """groupaccess.c ``ga_match_pattern_list``: some group matches, none is negated."""
    if not groups:
        return False
    found = False
    for group in groups:
        r = match_pattern_list(group, patterns)
        if r == -1:
            return False
        if r == 1:
            found = True
    return found



def match_host_and_ip(host: Optional[str], ipaddr: Optional[str], patterns: str) -> int:
    """match.c ``match_host_and_ip``: 1 when the client (its host name as sshd knows it,
    and its address) matches ``patterns``; 0 when not (or a negated entry matches); -1
    when the list is invalid (a CIDR entry with a bad mask): sshd then refuses the key."""
    try:
        mip = addr_match_list(ipaddr, patterns)
    except MatchSyntaxError as exc:
        return 0 if exc.code == -1 else -1
    if host is None or ipaddr is None or mip == -1:
        return 0
    mhost = match_pattern_list(host.lower(), patterns, dolower=True)
    if mhost == -1:
        return 0
    return 1 if (mhost or mip) else 0
