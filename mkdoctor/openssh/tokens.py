"""Splitting OpenSSH configuration text into words, as OpenSSH's misc.c does. Pure.

- :func:`strdelim`: misc.c ``strdelim`` (a keyword and the rest of its line: whitespace
  and at most one ``=``; a word may be double-quoted), used for keywords and Match lines.
- :func:`argv_split`: misc.c ``argv_split`` with terminate_on_comment (shell-like words:
  single and double quotes, backslash escapes, ``#`` at a word's start ends the line),
  how sshd (8.7+) and ssh split a keyword's arguments.
- :func:`hpdelim`: misc.c ``hpdelim2`` (``host:port``, ``[v6]:port``, ``host/port``).
- :func:`valid_port`: misc.c ``a2port``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

_WS = " \t\r\n"
_DELIM = re.compile(r'[ \t\r\n"=]')


@lru_cache(maxsize=8192)  # pure; a run evaluates the same lines for many connections and hosts
def strdelim(s: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """misc.c ``strdelim``: the next word of ``s`` and the rest. Splits on whitespace and
    at most one ``=``; a word may be double-quoted. Returns (None, None) on a missing
    closing quote, (word, None) at the end."""
    if s is None:
        return None, None
    m = _DELIM.search(s)
    if m is None:
        return s, None
    i = m.start()
    if s[i] == '"':
        body = s[:i] + s[i + 1:]
        j = body.find('"', i)
        if j < 0:
            return None, None
        word, rest = body[:j], body[j + 1:]
        return word, rest.lstrip(_WS)
    word = s[:i]
    equals = s[i] == "="
    rest = s[i + 1:].lstrip(_WS)
    if rest.startswith("=") and not equals:
        rest = rest[1:].lstrip(_WS)
    return word, rest


class QuoteError(ValueError):
    pass


def argv_split(s: str) -> list[str]:
    """misc.c ``argv_split`` with terminate_on_comment: words separated by spaces/tabs,
    single or double quotes, backslash escapes, ``#`` at a word's start ends the line."""
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        if s[i] in " \t":
            i += 1
            continue
        if s[i] == "#":
            break
        quote = ""
        arg: list[str] = []
        while i < n:
            c = s[i]
            if c == "\\" and i + 1 < n and (s[i + 1] in "'\"\\" or (not quote and s[i + 1] == " ")):
                arg.append(s[i + 1])
                i += 2
                continue
            if not quote and c in " \t":
                break
            if not quote and c in "\"'":
                quote = c
            elif quote and c == quote:
                quote = ""
            else:
                arg.append(c)
            i += 1
        if quote:
            raise QuoteError("invalid quotes")
        out.append("".join(arg))
    return out


def valid_port(text: str) -> Optional[int]:
    """misc.c ``a2port``: 1-65535, else None."""
    if not re.fullmatch(r"[0-9]+", text or ""):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None



def hpdelim(entry: str, slash: bool = False) -> tuple[Optional[str], Optional[str]]:
    """misc.c ``hpdelim2``: split ``host:port`` (``[v6]:port``; with ``slash`` also
    ``host/port``, as auth-options.c accepts for permitopen/permitlisten) at the FIRST
    delimiter after the host: (host without brackets, rest), rest None when there is no
    delimiter; (None, None) when sshd refuses it (a ``[`` without ``]``, text after
    ``]``, or a ``/`` where only ``:`` is allowed: misc.c ``hpdelim``)."""
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0:
            return None, None
        host, after = entry[1:end], entry[end + 1:]
    else:
        m = re.search(r"[:/]", entry)
        host, after = (entry, "") if m is None else (entry[:m.start()], entry[m.start():])
    if after == "":
        return host, None
    if after[0] == ":" or (after[0] == "/" and slash):
        return host, after[1:]
    return None, None
