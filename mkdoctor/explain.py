"""``mkdoctor explain "ERROR TEXT"``: from the message a user has in hand to the checks.

The text is matched against the table in :mod:`mkdoctor.messages`; every entry whose
pattern occurs is a candidate, ranked by how much of the text it explains (the longest
match wins: "Received disconnect ...: Too many authentication failures" is the
too-many-failures entry, not a generic disconnect). Pasted text is tolerated: prefixes
(``ssh:``, ``debug1:``, a prompt, a time stamp), line breaks and wrapped lines, quotes,
host names and ports inside.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from mkdoctor.messages import MESSAGES, Message

MAX_TEXT = 100_000  # a pasted log larger than this is cut (the head is kept)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                         "\u00ab": '"', "\u00bb": '"', "\u2013": "-", "\u2014": "-",
                         "\u00a0": " "})


def normalise(text: str) -> str:
    """One line: typographic quotes plain, every whitespace run (line breaks too) one space."""
    return " ".join(text[:MAX_TEXT].translate(_QUOTES).split())


@lru_cache(maxsize=None)
def _compiled(message: Message) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in message.patterns)


@dataclass
class Match:
    message: Message
    score: int  # the length of the longest stretch of the text the entry matched
    host: str = ""


def match(text: str) -> list[Match]:
    """Every entry that matches ``text``, best first (longest match; table order breaks ties)."""
    flat = normalise(text)
    found: list[tuple[int, int, Match]] = []
    for order, message in enumerate(MESSAGES):
        best: Optional[re.Match[str]] = None
        for pattern in _compiled(message):
            for m in pattern.finditer(flat):
                if m.end() > m.start() and (best is None or len(m.group()) > len(best.group())):
                    best = m
        if best is not None:
            host = (best.groupdict().get("host") or "").rstrip(":").replace("[", "").replace("]", "")
            found.append((-len(best.group()), order, Match(message, len(best.group()), host)))
    found.sort(key=lambda t: (t[0], t[1]))
    return [m for _, _, m in found]


def _run_command(checks: tuple[str, ...], host: str) -> str:
    cmd = f"mkdoctor --only {','.join(checks)}"
    local_only = all(c[:3] in ("MK1", "MK2") for c in checks)
    if local_only:
        return cmd
    if host and _plausible_host(host):
        return f"{cmd} --host {shlex.quote(host)}"
    return f"{cmd} --profile NAME"


def _plausible_host(host: str) -> bool:
    return bool(re.fullmatch(r"(?:[\w.+-]+@)?[\w.:-]{1,253}", host)) and not host.isdigit()


def _quoted(text: str) -> str:
    """The user's text as echoed back: one line, at most 100 characters, every
    unprintable character escaped (a pasted colour code never drives the terminal)."""
    flat = normalise(text)
    flat = flat[:97] + "..." if len(flat) > 100 else flat
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in flat)


def render(text: str, matches: list[Match], limit: int = 3) -> str:
    from mkdoctor.registry import get

    shown = matches[:limit]
    quoted = _quoted(text)
    out = [f"\"{quoted}\"", ""]
    for i, m in enumerate(shown):
        msg = m.message
        if i == 1:
            out += ["", "It also matches:", ""]
        elif i:
            out.append("")
        out.append(f"{msg.origin}: {msg.meaning}")
        out.append(f"  source: {msg.source}")
        out.append("  likely causes, most likely first:")
        for n, cause in enumerate(msg.causes, 1):
            out.append(f"  {n}. {cause.text}")
            names = ", ".join(f"{c} {get(c).name}" for c in cause.checks)
            out.append(f"     diagnosed by: {names}")
            out.append(f"     run: {_run_command(cause.checks, m.host)}")
            if cause.action:
                out.append(f"     then: {cause.action}")
    if len(matches) > limit:
        out += ["", f"({len(matches) - limit} weaker matches not shown)"]
    if any("--profile NAME" in line for line in out):
        out += ["", "(--profile NAME: your saved profile; or --host USER@HOST instead)"]
    out += ["", "mkdoctor explain MKnnn shows a check's page."]
    return "\n".join(out) + "\n"


def unknown(text: str) -> str:
    quoted = _quoted(text)
    return (f"mkdoctor does not recognise \"{quoted}\".\n"
            "Paste the exact line as printed (ssh -v shows more), or give a check ID "
            "(mkdoctor list); running mkdoctor --profile NAME checks every link.\n")
