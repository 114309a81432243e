"""The managed ``Host mk-NAME`` block of the ssh client configuration.

The block is delimited by two marker comments::

    # >>> mkdoctor mk-NAME >>>
    ...
    # <<< mkdoctor mk-NAME <<<

Everything outside the markers is kept byte for byte: comments, ``Include`` lines, CRLF
line endings, a missing final newline, odd bytes (decoded with ``surrogateescape``).

Placement. ssh uses, for each option, the *first* value it obtains (ssh_config(5):
"For each parameter, the first obtained value will be used"), and options written
before the first ``Host``/``Match`` line apply to every host. So a block appended at the
end of a file that has ``Host *`` (or global options) above it can be silently
overridden. A new block is therefore inserted at the very top of the file, and it ends
with a ``Host *`` line of its own: whatever global options follow (originally before any
``Host`` line) still apply to every host, exactly as before. An existing block is
replaced where it is (if the user moved it, that was their choice; MK501 compares
``ssh -G mk-NAME`` with the profile and reports any override).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mkdoctor.options import UsageError
from mkdoctor.openssh.tokens import QuoteError, argv_split

ALIAS_PREFIX = "mk-"


def start_marker(alias: str) -> str:
    return f"# >>> mkdoctor {alias} >>>"


def end_marker(alias: str) -> str:
    return f"# <<< mkdoctor {alias} <<<"


# Keys in the order written; values are strings.
BLOCK_KEYS = ("HostName", "User", "Port", "IdentityFile", "IdentitiesOnly", "ServerAliveInterval",
              "ExitOnForwardFailure")
# Carried over from the Host alias the user picked, when set there (so host-key trust
# and jump hosts stay what they were).
CARRIED_KEYS = ("HostKeyAlias", "UserKnownHostsFile", "ProxyJump")


@dataclass
class HostBlock:
    """What the managed block says. ``extra``: carried-over options (key -> value)."""

    alias: str
    hostname: str
    user: str
    port: int
    identity: str
    server_alive_interval: int = 30
    extra: dict[str, str] = field(default_factory=dict)

    def options(self) -> list[tuple[str, str]]:
        opts = [
            # HostName takes %-tokens (ssh_config(5) TOKENS): an IPv6 zone's % is doubled
            ("HostName", config_value("HostName", self.hostname).replace("%", "%%")),
            ("User", config_value("User", self.user)),
            ("Port", str(self.port)),
            ("IdentityFile", config_path_value(self.identity)),
            ("IdentitiesOnly", "yes"),
            ("ServerAliveInterval", str(self.server_alive_interval)),
            ("ExitOnForwardFailure", "yes"),
        ]
        for key in CARRIED_KEYS:
            if self.extra.get(key):
                value = self.extra[key]
                # UserKnownHostsFile arrives as a list of words already quoted.
                opts.append((key, _checked_words(key, value) if key == "UserKnownHostsFile"
                             else config_value(key, value)))
        return opts


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A Host alias the block may name: one word, no pattern or comment characters.
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Already-quoted lists of words (UserKnownHostsFile): bare words or whole "..." words.
_WORDS = re.compile(r'(?:"[^"]*"|[^"\s]+)(?:[ \t]+(?:"[^"]*"|[^"\s]+))*')


def config_value(key: str, value: str) -> str:
    """One ssh_config argument. A line break would start a directive of its own and a
    double quote would end the quoted word, so both (and any control character) are a
    :class:`UsageError`; a value with whitespace is double-quoted (one argument)."""
    if _CONTROL.search(value) or '"' in value:
        raise UsageError(f"{key} {value!r}: a value with a double quote or a control character "
                         "cannot be written to the ssh config")
    return f'"{value}"' if re.search(r"\s", value) else value


def _checked_words(key: str, value: str) -> str:
    if _CONTROL.search(value) or not _WORDS.fullmatch(value):
        raise UsageError(f"{key} {value!r}: cannot be written to the ssh config")
    return value


def config_path_value(path: str) -> str:
    """A file name as an ssh_config value, read back by ssh as exactly ``path``.

    ``%`` is a token character there (``%%`` is a literal percent, ssh_config(5) TOKENS).
    Since OpenSSH 8.7 a value is split like a shell word (misc.c ``argv_split``): ``'`` and
    ``"`` open quotes, and ``\\``, ``\'``, ``\"`` are escapes, so those three characters are
    escaped with a backslash; a value with white space or ``#`` is double-quoted. A line
    break or NUL cannot be written at all."""
    if any(c in path for c in "\r\n\x00"):
        raise UsageError(f"{path!r}: a key path with a line break cannot be written to the "
                         "ssh config")
    value = path.replace("%", "%%")
    value = re.sub(r"""([\\'"])""", r"\\\1", value)
    return f'"{value}"' if re.search(r"[\s#]", value) else value


def render_block(block: HostBlock, eol: str = "\n") -> str:
    if not _ALIAS.fullmatch(block.alias):
        raise UsageError(f"{block.alias!r}: not a usable ssh Host alias")
    lines = [
        start_marker(block.alias),
        "# Written by `mkdoctor setup`: replaced as a whole on the next run, edit the profile",
        "# instead. It stays first in the file because ssh uses the first value it finds.",
        f"Host {block.alias}",
    ]
    lines += [f"    {k} {v}" for k, v in block.options()]
    lines += [
        "# The next line ends this block: what follows applies to every host, as before.",
        "Host *",
        end_marker(block.alias),
    ]
    return eol.join(lines) + eol


def detect_eol(text: str) -> str:
    """The file's line ending, from its first line (LF for an empty file)."""
    first = text.split("\n", 1)
    return "\r\n" if len(first) == 2 and first[0].endswith("\r") else "\n"


@dataclass
class BlockSpan:
    start: int  # character offset of the start marker line
    end: int  # character offset just after the end marker line (its EOL included)


def find_block(text: str, alias: str) -> Optional[BlockSpan]:
    """The managed block of ``alias`` in ``text``, or None. A start marker without an end
    marker (or two blocks of the same alias) is a :class:`UsageError`: we will not guess
    where the user's content begins."""
    starts: list[int] = []
    ends: list[int] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == start_marker(alias):
            starts.append(offset)
        elif stripped == end_marker(alias):
            ends.append(offset + len(line))
        offset += len(line)
    if not starts and not ends:
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] <= starts[0]:
        raise UsageError(
            f"the ssh config has a damaged mkdoctor block for {alias} ({len(starts)} start and "
            f"{len(ends)} end marker(s)); remove the lines from '{start_marker(alias)}' to "
            f"'{end_marker(alias)}' by hand and run mkdoctor setup again")
    return BlockSpan(starts[0], ends[0])


def upsert_block(text: str, block: HostBlock) -> str:
    """``text`` with the managed block of ``block.alias`` replaced (where it is) or
    inserted at the top. Content outside the block is kept exactly."""
    eol = detect_eol(text)
    rendered = render_block(block, eol)
    span = find_block(text, block.alias)
    if span is None:
        return rendered + text
    return text[:span.start] + rendered + text[span.end:]


def remove_block(text: str, alias: str) -> str:
    span = find_block(text, alias)
    return text if span is None else text[:span.start] + text[span.end:]


def block_text(text: str, alias: str) -> Optional[str]:
    span = find_block(text, alias)
    return None if span is None else text[span.start:span.end]


def parse_block(text: str, alias: str) -> Optional[dict[str, str]]:
    """The options of the managed block (keys lower-case, first value wins, quotes and
    ``%%`` undone), or None when there is no block."""
    body = block_text(text, alias)
    if body is None:
        return None
    opts: dict[str, str] = {}
    in_host = False
    for line in body.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"(\S+?)(?:\s*=\s*|\s+)(.*)$", s)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2).strip()
        if key == "host":
            in_host = value == alias
            continue
        if not in_host:
            continue
        if key in ("identityfile", "userknownhostsfile"):
            try:  # quotes and escapes as ssh reads them (the inverse of config_path_value)
                value = " ".join(argv_split(value))
            except QuoteError:
                pass
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key in ("identityfile", "hostname"):
            value = value.replace("%%", "%")
        opts.setdefault(key, value)
    return opts


def host_aliases(text: str) -> list[str]:
    """Concrete Host aliases of a config file (no patterns, no negations), in order."""
    out: list[str] = []
    for line in text.splitlines():
        for name in _host_names(line):
            if name not in out:
                out.append(name)
    return out


def _host_names(line: str) -> list[str]:
    m = re.match(r"\s*host(?:\s*=\s*|\s+)(.*)$", line, re.IGNORECASE)
    if not m:
        return []
    names = (n.strip('"') for n in m.group(1).split("#", 1)[0].split())
    return [n for n in names if n and not any(c in n for c in "*?!,")]


# OpenSSH stops at this depth of nested Include (readconf.c, READCONF_MAX_DEPTH).
MAX_INCLUDE_DEPTH = 16


def include_paths(line: str, home: Path) -> list[Path]:
    """The files an ``Include`` line names, as ssh reads them for a user configuration
    (ssh_config(5), Include): ``~`` is the home directory, a relative path is relative
    to ``~/.ssh``, globs are expanded and read in lexical order. [] for another line."""
    import glob
    import os

    m = re.match(r"\s*include(?:\s*=\s*|\s+)(.*)$", line, re.IGNORECASE)
    if not m:
        return []
    out: list[Path] = []
    for word in re.findall(r'"[^"]*"|\S+', m.group(1)):
        if word.startswith("#"):
            break
        word = word.strip('"')
        if word == "~" or word.startswith("~/"):
            word = str(home) + word[1:]
        elif word.startswith("~"):
            word = os.path.expanduser(word)
        if not os.path.isabs(word):
            word = str(home / ".ssh" / word)
        out += [Path(f) for f in sorted(glob.glob(word))]
    return out


def _applies_to_all(line: str) -> Optional[bool]:
    """For a ``Host``/``Match`` line: whether it applies to every host (``Host *``, a
    ``*`` among its patterns, ``Match all``); None for any other line."""
    m = re.match(r"\s*(host|match)(?:\s*=\s*|\s+)(.*)$", line, re.IGNORECASE)
    if not m:
        return None
    words = [w.strip('"') for w in m.group(2).split("#", 1)[0].split()]
    if m.group(1).lower() == "match":
        return [w.lower() for w in words] == ["all"]
    return "*" in words


def config_aliases(path: Path, home: Optional[Path] = None) -> list[tuple[str, Path]]:
    """Concrete Host aliases of the ssh config ``path`` and of the files it includes
    (recursively, in the order ssh reads them, at most :data:`MAX_INCLUDE_DEPTH` deep),
    each with the file that names it. An ``Include`` inside a ``Host``/``Match`` block
    counts only when the block applies to every host: ssh reads the others only for
    the hosts they match (readconf.c, SSHCONF_NEVERMATCH), so their aliases would
    never apply. Files that cannot be read are passed over."""
    home = home if home is not None else Path.home()
    out: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def walk(file: Path, depth: int) -> None:
        try:
            text = read_text(file.read_bytes())
        except OSError:  # missing, unreadable, a directory
            return
        everywhere = True  # before any Host/Match line
        for line in text.splitlines():
            block = _applies_to_all(line)
            if block is not None:
                everywhere = block
            for name in _host_names(line):
                if name not in seen:
                    seen.add(name)
                    out.append((name, file))
            if everywhere and depth < MAX_INCLUDE_DEPTH:
                for inc in include_paths(line, home):
                    walk(inc, depth + 1)

    walk(Path(path), 0)
    return out


def read_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
