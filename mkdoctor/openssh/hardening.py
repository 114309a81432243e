"""The one sshd drop-in mkdoctor names and writes, and the fix texts that name it (pure).

Every fix text that adds a setting (MK205, MK310, MK311, MK312, the setup's step 11 and
the docs) names :data:`DROPIN`, so the user ends up with one file of mkdoctor's, not
three.

Why this name: sshd reads ``Include`` globs in glob(3) order, which sorts with
``strcmp`` in the C locale (byte order), and for each keyword **the first value it reads
wins** (sshd_config(5)). Distributions name drop-ins ``NN-name.conf``: Ubuntu's cloud
images ship ``50-cloud-init.conf`` (often ``PasswordAuthentication yes``), Fedora
``50-redhat.conf``, sites use ``00-`` to ``99-``. ``-`` (0x2d) sorts before every
digit (0x30-0x39) and letter, so ``0-mkdoctor.conf`` sorts before every ``00-``...``99-``
name and every name that starts with a letter. A name that starts with ``-`` or ``+``
would sort earlier still, but is taken for an option by ``rm``, ``ls`` and friends; a
dot-file is never matched by ``*.conf``. Only a name that starts with ``0`` followed by
a byte below ``-`` (``0!``, ``0+``, ``0,``), with ``0-`` and a byte below ``m``, or with
a punctuation byte below ``0`` sorts before it; the setup verifies the result anyway
(:func:`loss_reason` says what still wins).
"""

from __future__ import annotations

import posixpath
from typing import Iterable, Optional

DROPIN_DIR = "/etc/ssh/sshd_config.d"
DROPIN_NAME = "0-mkdoctor.conf"
DROPIN = f"{DROPIN_DIR}/{DROPIN_NAME}"
INCLUDE_LINE = f"Include {DROPIN_DIR}/*.conf"

# How a changed sshd configuration is applied (Debian/Ubuntu call the service "ssh",
# Red Hat/Fedora/SUSE/Arch "sshd").
RESTART_REMOTE = "sudo systemctl reload ssh (or sshd)"


_SPELLING = {"permitrootlogin": "PermitRootLogin", "passwordauthentication": "PasswordAuthentication",
             "kbdinteractiveauthentication": "KbdInteractiveAuthentication"}


def spelled(keyword: str) -> str:
    """The keyword as sshd_config(5) spells it (``permitrootlogin`` -> ``PermitRootLogin``)."""
    return _SPELLING.get(keyword.lower(), keyword)


def sorts_before(a: str, b: str) -> bool:
    """glob(3)'s order: ``strcmp`` on the bytes (the C locale)."""
    return a.encode("utf-8", "surrogateescape") < b.encode("utf-8", "surrogateescape")


def dropin_command(lines: Iterable[str], check: str) -> str:
    """The command that appends ``lines`` to :data:`DROPIN` and checks the result."""
    text = "\\n".join(lines)
    return (f"printf '{text}\\n' | sudo tee -a {DROPIN} >/dev/null && {check}")


def dropin_fix(keyword: str, value: str, place: str, check: str) -> str:
    """The fix text for a setting no line sets yet (OpenSSH's default applies)."""
    return (f"on {place}: {dropin_command([f'{keyword} {value}'], check)} (the first value "
            f"sshd reads wins: {DROPIN_NAME} sorts before the other drop-ins, and the main "
            f"sshd_config must have '{INCLUDE_LINE}' before any line that sets {keyword}, as "
            "Debian, Ubuntu and Fedora have at the top; otherwise change that line: "
            f"sudo grep -rni {keyword} /etc/ssh/)")


def loss_reason(keyword: str, origin: str, main: str, include_lines: list[int],
                block: str = "", dropin: str = DROPIN) -> Optional[str]:
    """Why a value written in ``dropin`` does not win, from where the winning value is
    set (``origin`` "FILE:LINE" or "default"), and what to change. None when it does
    win. ``include_lines``: the lines of ``main`` whose ``Include`` reads the drop-in
    directory; ``block``: the ``Match`` block the winning line is in ("" outside one)."""
    path, _, line = origin.rpartition(":")
    if path == dropin:
        return None
    if block:
        return (f"{block} sets {keyword} for this connection at {path} line {line} (a Match "
                f"block overrides every global setting, drop-ins included): change line {line} "
                f"of {path}")
    if not include_lines:
        return (f"{main} has no '{INCLUDE_LINE}' line, so sshd never reads {dropin}: add that "
                f"line at the top of {main}")
    if path == main and line.isdigit() and int(line) < include_lines[0]:
        return (f"{main} sets {keyword} at line {line}, before its Include at line "
                f"{include_lines[0]} (the first value wins): change or delete line {line}")
    if posixpath.dirname(path) == posixpath.dirname(dropin) and sorts_before(
            posixpath.basename(path), posixpath.basename(dropin)):
        return (f"{path} sorts before {posixpath.basename(dropin)} and sets {keyword} at line "
                f"{line} (the first value wins): change line {line} of {path}")
    if origin in ("default", ""):
        return f"{keyword} keeps OpenSSH's default: {dropin} was not read"
    return f"{keyword} is set first at {path} line {line}: change that line"


def include_lines(main_text: str, dropin: str = DROPIN) -> list[int]:
    """The lines of the main file whose ``Include`` reads ``dropin`` (pure; glob match of
    each argument, relative paths against /etc/ssh)."""
    import fnmatch

    from mkdoctor.openssh.sshd_config import argv_split, strdelim

    out = []
    for number, raw in enumerate(main_text.split("\n"), start=1):
        keyword, rest = strdelim(raw.strip(" \t\r"))
        if not keyword or keyword.lower() != "include" or not rest:
            continue
        try:
            args = argv_split(rest)
        except ValueError:
            continue
        for arg in args:
            pattern = arg if arg.startswith("/") else f"/etc/ssh/{arg}"
            parts, pats = dropin.split("/"), pattern.split("/")
            if len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b)
                                               for a, b in zip(parts, pats)):
                out.append(number)
                break
    return out
