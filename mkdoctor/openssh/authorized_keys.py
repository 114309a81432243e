"""The ``authorized_keys`` line format, parsed the way OpenSSH's sshd parses it. Pure.

Used by MK305 to find our key (by SHA256 fingerprint) in the remote AuthorizedKeysFile
and to judge the options on its line. Every rule here follows OpenSSH's own code, so a
line this module rejects is a line sshd ignores:

- A line is ``[options] keytype base64-key [comment]``; empty lines and lines starting
  with ``#`` (after leading blanks) are ignored. sshd first tries to read a key at the
  start of the line; only if that fails is the first field taken as options
  (``check_authkey_line`` in auth2-pubkeyfile.c).
- The options field ends at the first blank that is not inside double quotes; ``\\"``
  does not toggle quoting (``sshkey_advance_past_options`` in sshkey.c).
- Options are separated by commas; flag names match case-insensitively, and most flags
  take a ``no-`` prefix; valued options (``command="..."``) must be double-quoted and
  ``\\"`` is the only escape inside the quotes (``opt_flag``/``opt_match``/
  ``opt_dequote`` in misc.c, ``sshauthopt_parse`` in auth-options.c). Anything else is
  "unknown key option" and sshd refuses the whole line.
- ``restrict`` turns off port, agent and X11 forwarding, the pty and ~/.ssh/rc; flags
  that follow it turn single features back on. Flags apply in order.

Sources: sshd(8) "AUTHORIZED_KEYS FILE FORMAT" (https://man.openbsd.org/sshd#AUTHORIZED_KEYS_FILE_FORMAT);
OpenSSH portable auth-options.c, misc.c, sshkey.c, auth2-pubkeyfile.c, channels.c.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Union

from mkdoctor.openssh.forwarding import listen_permitted, permit_error  # noqa: F401 (API)
from mkdoctor.openssh.patterns import MatchSyntaxError, addr_match_list, match_host_and_ip
from mkdoctor.openssh.pubkey import blob_error, fingerprint, is_keytype  # noqa: F401 (API)

# Flags, in the order sshauthopt_parse tries them; True: accepts a "no-" prefix.
FLAG_OPTIONS: tuple[tuple[str, bool], ...] = (
    ("restrict", False),
    ("cert-authority", False),
    ("port-forwarding", True),
    ("agent-forwarding", True),
    ("x11-forwarding", True),
    ("touch-required", True),
    ("verify-required", True),
    ("pty", True),
    ("user-rc", True),
)
VALUE_OPTIONS = ("command", "principals", "from", "expiry-time", "environment",
                 "permitopen", "permitlisten", "tunnel")
# Options that may appear only once on a line ("multiple \"command\" clauses").
SINGLE_VALUE = ("command", "principals", "from")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EXPIRY = re.compile(r"^\d{8}(\d{4}(\d{2})?)?Z?$")


class OptionError(ValueError):
    """The options field is not valid; sshd refuses the whole line."""


@dataclass(frozen=True)
class KeyOption:
    name: str  # lower case, without "no-"
    value: Optional[str] = None  # dequoted value of name="..."; None for flags
    negated: bool = False  # "no-pty" -> name "pty", negated True

    def __str__(self) -> str:
        if self.value is not None:
            return f'{self.name}="{self.value}"'
        return ("no-" if self.negated else "") + self.name


@dataclass
class KeyLine:
    """One valid key line."""

    number: int
    keytype: str
    blob: str  # base64, as written
    comment: str = ""
    options: list[KeyOption] = field(default_factory=list)
    options_text: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    def values(self, name: str) -> list[str]:
        return [o.value for o in self.options if o.name == name and o.value is not None]

    def has(self, name: str) -> bool:
        return any(o.name == name for o in self.options)

    @property
    def port_forwarding(self) -> bool:
        """Whether sshd allows port forwarding for this key (flags apply in order)."""
        allowed = True
        for opt in self.options:
            if opt.name == "restrict":
                allowed = False
            elif opt.name == "port-forwarding":
                allowed = not opt.negated
        return allowed


@dataclass
class BadLine:
    """A line sshd ignores: why, and the start of the text (public data only)."""

    number: int
    reason: str
    text: str


ParsedLine = Union[KeyLine, BadLine]


# --- keys ---------------------------------------------------------------------------


# --- options ------------------------------------------------------------------------


def split_options(line: str) -> tuple[str, str]:
    """(options, rest): the options end at the first unquoted blank."""
    quoted = False
    i = 0
    while i < len(line) and (quoted or line[i] not in " \t"):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] == '"':
            i += 1  # skip both
        elif line[i] == '"':
            quoted = not quoted
        i += 1
    if quoted:
        raise OptionError("unterminated double quote in the options")
    return line[:i], line[i:].lstrip(" \t")


def _dequote(text: str, i: int) -> tuple[str, int]:
    """The quoted value starting at ``text[i]`` and the index after its closing quote."""
    if i >= len(text) or text[i] != '"':
        raise OptionError("missing start quote (values must be written name=\"value\")")
    i += 1
    out = []
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == '"':
            i += 1
        out.append(text[i])
        i += 1
    if i >= len(text):
        raise OptionError("missing end quote")
    return "".join(out), i + 1


def parse_options(text: str) -> list[KeyOption]:
    """Parse an options field (no unquoted blanks). Raises :class:`OptionError` where
    sshd would refuse the line."""
    opts: list[KeyOption] = []
    seen: set[str] = set()
    i = 0
    lower = text.lower()
    while i < len(text):
        for name, negatable in FLAG_OPTIONS:
            j, negated = i, False
            if negatable and lower.startswith("no-", j):
                j, negated = j + 3, True
            if lower.startswith(name, j):
                opts.append(KeyOption(name, None, negated))
                i = j + len(name)
                break
        else:
            for name in VALUE_OPTIONS:
                if lower.startswith(name + "=", i):
                    if name in SINGLE_VALUE and name in seen:
                        raise OptionError(f'multiple "{name}" clauses')
                    seen.add(name)
                    value, i = _dequote(text, i + len(name) + 1)
                    _check_value(name, value)
                    opts.append(KeyOption(name, value))
                    break
            else:
                word = re.split(r"[,=]", text[i:], maxsplit=1)[0]
                raise OptionError(f"unknown key option {word!r}")
        if i >= len(text):
            break
        if text[i] != ",":
            word = re.split(r"[,=]", text[i:], maxsplit=1)[0]
            raise OptionError(f"unknown key option near {word!r}")
        i += 1
        if i >= len(text):
            raise OptionError("unexpected end of options (a trailing comma)")
    return opts


def _check_value(name: str, value: str) -> None:
    if name == "environment":
        var, eq, _ = value.partition("=")
        if not eq or not _ENV_NAME.match(var):
            raise OptionError(f'invalid environment string "{value}"')
    elif name in ("permitopen", "permitlisten"):
        error = permit_error(value, listen=name == "permitlisten", key_option=True)
        if error:
            raise OptionError(f'{error} in {name}="{value}" (write host:port)')
    elif name == "expiry-time":
        if not _EXPIRY.match(value):
            raise OptionError(f'invalid expiry-time="{value}" (write YYYYMMDD[HHMM[SS]][Z])')
    elif name == "tunnel":
        if not (value.isdigit() or value.lower() == "any"):
            raise OptionError(f'invalid tunnel="{value}"')


# --- lines ----------------------------------------------------------------------------


def _shown(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def parse_line(line: str, number: int) -> Optional[ParsedLine]:
    """One line of an authorized_keys file: None for blanks and comments, else a
    :class:`KeyLine` or a :class:`BadLine` (never raises)."""
    text = line.rstrip("\r\n").lstrip(" \t")
    if not text or text.startswith("#"):
        return None
    fields = re.split(r"[ \t]+", text, maxsplit=2)
    options_text = ""
    if not is_keytype(fields[0]):
        # sshd: no key at the start of the line, so the first field is options.
        try:
            options_text, rest = split_options(text)
        except OptionError as exc:
            return BadLine(number, str(exc), _shown(text))
        fields = re.split(r"[ \t]+", rest.strip(" \t\r"), maxsplit=2) if rest.strip() else []
        if not fields:
            return BadLine(number, "not a key line (no key type such as ssh-ed25519)", _shown(text))
        if not is_keytype(fields[0]):
            try:
                parse_options(options_text)
            except OptionError:
                return BadLine(number, "not a key line (it does not start with a key type "
                               "such as ssh-ed25519)", _shown(text))
            return BadLine(number, f"unknown key type {_shown(fields[0], 30)!r}", _shown(text))
    if len(fields) < 2:
        return BadLine(number, f"{fields[0]} without the key data", _shown(text))
    err = blob_error(fields[0], fields[1])
    if err:
        return BadLine(number, err, _shown(text))
    try:
        options = parse_options(options_text) if options_text else []
    except OptionError as exc:
        return BadLine(number, f"sshd refuses the line's options: {exc}", _shown(text))
    comment = fields[2].strip() if len(fields) > 2 else ""
    return KeyLine(number, fields[0], fields[1], comment, options, options_text)


def parse_file(text: str) -> tuple[list[KeyLine], list[BadLine]]:
    """Every line of an authorized_keys file: the valid key lines and the bad ones. A bad
    line never hides the lines after it."""
    keys: list[KeyLine] = []
    bad: list[BadLine] = []
    for number, line in enumerate(text.split("\n"), start=1):
        parsed = parse_line(line, number)
        if isinstance(parsed, KeyLine):
            keys.append(parsed)
        elif isinstance(parsed, BadLine):
            bad.append(parsed)
    return keys, bad


# --- what the options allow ---------------------------------------------------------


def from_matches(patterns: str, address: str, hostname: Optional[str] = None,
                 usedns: Optional[str] = None) -> Optional[bool]:
    """Whether a client at ``address`` satisfies ``from="patterns"`` (auth-options.c
    ``auth_authorise_keyopts`` with match.c ``match_host_and_ip``). sshd compares host-name
    patterns with the client's name from reverse DNS only under ``UseDNS yes``; under
    ``UseDNS no`` (the default) with the address itself. A negated match refuses, and so
    does a list sshd finds invalid (a CIDR with host bits set, ``10.0.0.1/8``, or a mask
    too long: addrmatch.c ``addr_pton_cidr``): the key is refused for every client.
    None when the answer rests on a name that is not known (``usedns`` None: unknown,
    or "yes" without ``hostname``) and the address alone does not decide it."""
    if match_host_and_ip(address, address, patterns) == -1:
        return False  # an invalid list: sshd refuses the key whoever connects
    if usedns == "yes" and hostname:
        return match_host_and_ip(hostname, address, patterns) == 1
    by_address = match_host_and_ip(address, address, patterns) == 1
    if usedns == "no":
        return by_address
    try:
        negated_ip = addr_match_list(address, patterns) == -1
    except MatchSyntaxError:
        return False
    names = [p.lstrip("!") for p in patterns.split(",")
             if p and not re.fullmatch(r"[0-9.:*?a-fA-F/]+", p.lstrip("!"))]
    if not names or negated_ip:
        return by_address
    if by_address and not any(p.startswith("!") for p in patterns.split(",")):
        return True
    return None
