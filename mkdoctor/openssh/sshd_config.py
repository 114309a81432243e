"""The sshd configuration evaluator: what an OpenSSH ``sshd`` would apply to one connection.

Pure: the core (:func:`evaluate`) reads files only through a :class:`Loader` (a mapping of
path -> text with the results of glob patterns, or any object with ``read``/``glob``), so
the same code judges the remote host's sshd (files fetched over ssh, see
:mod:`mkdoctor.sshd_remote`) and the laptop's own (:func:`local_loader`, MK205).

It follows OpenSSH's ``servconf.c`` (``process_server_config_line_depth``,
``match_cfg_line``, ``parse_server_match_config``, ``copy_set_server_options``) and
``match.c``/``addrmatch.c``, and is tested against the real ``sshd -T`` on generated
configurations (tests/test_sshd_config.py, a differential test):

- Keywords are case-insensitive; ``Keyword value``, ``Keyword=value`` and
  ``Keyword = value`` are the same; arguments may be quoted (``"a b"``); a ``#`` at the
  start of a word starts a comment.
- **The first value wins** (sshd_config(5): "Unless noted otherwise, for each parameter,
  the first obtained value will be used"). A whole line counts as the value for list
  keywords (``AuthorizedKeysFile a b``, ``PermitListen p1 p2``).
- ``Include`` (sshd_config(5)): relative paths are relative to ``/etc/ssh``; globs expand
  in lexical order; a pattern that matches nothing is silently ignored; an ``Include``
  inside a ``Match`` block only applies when the block does; at most 16 levels (deeper,
  or a loop, and sshd refuses to start: "Too many recursive configuration includes").
- ``Match`` is evaluated as sshd does in two passes: pass one applies every line outside
  ``Match`` blocks (and inside ``Match All``); pass two starts inactive and applies only
  the lines of the ``Match`` blocks that match the connection, first value wins again,
  and every keyword set there replaces pass one's value. Criteria: ``User``, ``Group``,
  ``Host``, ``Address`` and ``LocalAddress`` (comma lists of ``*``/``?`` patterns with
  ``!`` negation, CIDR for addresses), ``LocalPort`` (one number) and ``All``. A list
  matches when some pattern matches and no negated one does: ``Match User !root`` alone
  never matches (write ``Match User *,!root``).
- OpenSSH's built-in defaults apply to what no line sets (``PermitRootLogin
  prohibit-password``, ``PasswordAuthentication yes``, ...: see :data:`KEYWORDS`).

Values are given as ``sshd -T`` prints them, lower-case keyword -> value, with one
normalisation applied to both sources (:func:`normalise`): ``PermitRootLogin
without-password`` (what sshd 9.2 prints for ``prohibit-password``) is
``prohibit-password``.

Keywords are judged for the sshd build that runs (``build``, from the server's banner or
``sshd -V``; :mod:`mkdoctor.openssh.keywords`): a deprecated, ignored or compiled-out
keyword is a note (sshd logs it and starts), a keyword only some builds know is a note
"depends on the build" when the build is unknown. Algorithm lists are checked against
the names the build knows (:mod:`mkdoctor.openssh.algorithms`).

Lines sshd would reject (unknown keywords, a missing argument, bad values, bad quotes, a
``Match`` it cannot parse, a global-only keyword inside ``Match``, an algorithm it does
not know), unreadable files, NUL bytes and Include loops are reported in ``problems``;
evaluation goes on as far as it can, and never raises.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Mapping, Optional, Protocol, Union

from mkdoctor.openssh.algorithms import KINDS as ALGORITHM_KINDS
from mkdoctor.openssh.algorithms import list_verdict as algorithm_list_verdict
from mkdoctor.openssh.forwarding import listen_permitted, permit_error  # noqa: F401 (API)
from mkdoctor.openssh.keywords import (DEPENDS, DEPRECATED, IGNORED, UNKNOWN, UNKNOWN_BUILD,
                                       UNSUPPORTED, ServerBuild, keyword_status)
from mkdoctor.openssh.patterns import (MatchSyntaxError, addr_match_list, groups_match,  # noqa: F401
                                       match_pattern, match_pattern_list)
from mkdoctor.openssh.tokens import QuoteError, argv_split, strdelim, valid_port  # noqa: F401

SSHDIR = "/etc/ssh"  # relative Include paths are relative to this (OpenSSH's SSHDIR)
DEFAULT_CONFIG = "/etc/ssh/sshd_config"
MAX_DEPTH = 16  # servconf.c SERVCONF_MAX_DEPTH

ORIGIN_DEFAULT = "default"
ORIGIN_ORACLE = "sshd -T"

# Which keywords a build accepts, deprecates or lacks: keywords.py (servconf.c's keyword
# tables of 7.4..10.5 and the vendors' patches). Kept for callers: every keyword some
# build knows.
from mkdoctor.openssh.keywords import canonical_keywords as _canonical  # noqa: E402

KNOWN_KEYWORDS = _canonical()

# Spellings that set another option (servconf.c keyword table: the same opcode).
ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication",
           "skeyauthentication": "kbdinteractiveauthentication",
           "dsaauthentication": "pubkeyauthentication"}


@dataclass(frozen=True)
class Keyword:
    """How one keyword we evaluate is parsed. ``choices`` maps an accepted argument
    (case-insensitive) to the value ``sshd -T`` prints; None means a list of words."""

    default: str
    choices: Optional[Mapping[str, str]] = None
    kind: str = "choice"  # choice | list | permitlisten | permitopen | authmethods |
    # accumulate (every active line adds: AllowUsers...) | rest (the rest of the line:
    # ForceCommand) | word (one argument: ChrootDirectory) | port | maxstartups


_FLAG = {"yes": "yes", "no": "no"}

# The keywords evaluated, with OpenSSH 9.2's defaults (servconf.c
# fill_default_server_options; sshd_config(5)). PermitRootLogin's default
# prohibit-password is printed "without-password" by sshd 9.2: see normalise().
KEYWORDS: dict[str, Keyword] = {
    "permitrootlogin": Keyword("prohibit-password", {
        "without-password": "prohibit-password", "prohibit-password": "prohibit-password",
        "forced-commands-only": "forced-commands-only", "yes": "yes", "no": "no"}),
    "passwordauthentication": Keyword("yes", _FLAG),
    "kbdinteractiveauthentication": Keyword("yes", _FLAG),
    "pubkeyauthentication": Keyword("yes", _FLAG),
    "permitemptypasswords": Keyword("no", _FLAG),
    "usepam": Keyword("no", _FLAG),
    "strictmodes": Keyword("yes", _FLAG),
    "usedns": Keyword("no", _FLAG),
    "disableforwarding": Keyword("no", _FLAG),
    "allowtcpforwarding": Keyword("yes", {
        "yes": "yes", "all": "yes", "no": "no", "local": "local", "remote": "remote"}),
    "gatewayports": Keyword("no", {"no": "no", "yes": "yes", "clientspecified": "clientspecified"}),
    "authorizedkeysfile": Keyword(".ssh/authorized_keys .ssh/authorized_keys2", kind="list"),
    "authenticationmethods": Keyword("any", kind="authmethods"),
    "permitlisten": Keyword("any", kind="permitlisten"),
    "permitopen": Keyword("any", kind="permitopen"),
    "allowusers": Keyword("", kind="accumulate"),
    "allowgroups": Keyword("", kind="accumulate"),
    "denyusers": Keyword("", kind="accumulate"),
    "denygroups": Keyword("", kind="accumulate"),
    "forcecommand": Keyword("none", kind="rest"),
    "chrootdirectory": Keyword("none", kind="word"),
    "port": Keyword("22", kind="port"),
    "maxstartups": Keyword("10:30:100", kind="maxstartups"),
}

# Keywords whose every active line adds to the value (servconf.c opt_array_append, and
# the Port list) instead of the first value winning.
ACCUMULATE = frozenset({"allowusers", "allowgroups", "denyusers", "denygroups", "port"})


def normalise(keyword: str, value: str) -> str:
    """One spelling per value, whichever source it came from (``sshd -T`` or us)."""
    keyword = keyword.lower()
    if keyword == "permitrootlogin" and value == "without-password":
        return "prohibit-password"
    return value


# --- the connection ----------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """The connection sshd matches ``Match`` blocks against (``sshd -T -C``).

    ``host`` is the client's name from reverse DNS, when known (else its address).
    sshd matches ``Match Host`` (and ``from=`` host names) against that name only with
    ``UseDNS yes``; with ``UseDNS no`` (the default) against the address
    (auth.c ``auth_get_canonical_hostname``): the evaluator chooses (:meth:`seen_host`).
    ``groups`` are the user's groups on the server (``id -Gn``); None when unknown, and
    then ``Match Group`` cannot match (as sshd does for a user that does not exist).
    """

    user: str
    host: str
    addr: str
    laddr: str
    lport: int
    groups: Optional[tuple[str, ...]] = None

    def seen_host(self, usedns: str) -> str:
        """The host name sshd matches ``Match Host`` against under ``UseDNS usedns``."""
        return self.host if usedns == "yes" else self.addr

    def spec(self, usedns: Optional[str] = None) -> str:
        """The ``sshd -T -C`` connection specification (``sshd -T`` takes host= as
        given: pass ``usedns`` to give the name the running sshd would use)."""
        host = self.host if usedns is None else self.seen_host(usedns)
        return (f"user={self.user},host={host},addr={self.addr},"
                f"laddr={self.laddr},lport={self.lport}")


# --- files ---------------------------------------------------------------------------------


class FileUnavailable(Exception):
    """A configuration file could not be read (the reason is the message)."""


class Loader(Protocol):
    def read(self, path: str) -> str:
        """The file's text; raises :class:`FileUnavailable`."""

    def glob(self, pattern: str) -> list[str]:
        """The paths ``pattern`` matches, sorted, as glob(3) would list them."""


@dataclass
class Snapshot:
    """A :class:`Loader` over files already fetched: ``files`` path -> text (or a
    :class:`FileUnavailable`), ``globs`` pattern -> matching paths. What the evaluator
    asked for and the snapshot did not hold is collected in ``wanted`` (for a caller
    that fetches remote files in rounds); such files count as missing meanwhile."""

    files: dict[str, Union[str, FileUnavailable]] = field(default_factory=dict)
    globs: dict[str, list[str]] = field(default_factory=dict)
    wanted: set[str] = field(default_factory=set)

    def read(self, path: str) -> str:
        if path not in self.files:
            self.wanted.add(path)
            raise FileUnavailable("not fetched")
        content = self.files[path]
        if isinstance(content, FileUnavailable):
            raise content
        return content

    def glob(self, pattern: str) -> list[str]:
        if pattern in self.globs:
            return list(self.globs[pattern])
        if not _has_magic(pattern):
            if pattern in self.files:
                return [pattern]
        self.wanted.add(pattern)
        return []


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


# --- Match lines (servconf.c match_cfg_line) ------------------------------------------------


def match_line(rest: Optional[str], conn: Optional[Connection], usedns: str = "no") -> int:
    """servconf.c ``match_cfg_line``: does a ``Match`` line's criteria match ``conn``?
    With ``conn`` None (sshd's first pass) only ``All`` matches. Raises
    :class:`MatchSyntaxError` where sshd says "Bad Match condition"."""
    result, attributes = 1, 0
    s = rest
    while True:
        attrib, s = strdelim(s)
        if not attrib:
            break
        if attrib.startswith("#"):
            break
        attributes += 1
        if attrib.lower() == "all":
            arg, _ = strdelim(s)
            if attributes > 1 or (arg and not arg.startswith("#")):
                raise MatchSyntaxError("'all' cannot be combined with other Match attributes")
            return 1
        arg, s = strdelim(s)
        if not arg or arg.startswith("#"):
            raise MatchSyntaxError(f"missing Match criteria for {attrib}")
        kind = attrib.lower()
        if kind == "user":
            if conn is None or match_pattern_list(conn.user, arg) != 1:
                result = 0
        elif kind == "group":
            if conn is None or not groups_match(conn.groups, arg):
                result = 0
        elif kind == "host":
            if conn is None or match_pattern_list(conn.seen_host(usedns).lower(), arg,
                                                  dolower=True) != 1:
                result = 0
        elif kind in ("address", "localaddress"):
            where = None if conn is None else (conn.addr if kind == "address" else conn.laddr)
            if addr_match_list(where, arg) != 1 or conn is None:
                result = 0
        elif kind == "localport":
            port = valid_port(arg)
            if port is None:
                raise MatchSyntaxError(f"invalid LocalPort {arg!r} (one port number)")
            if conn is None or port != conn.lport:
                result = 0
        elif kind == "rdomain":
            result = 0  # routing domains are not part of our connection
        else:
            raise MatchSyntaxError(f"unsupported Match attribute {attrib}")
    if attributes == 0:
        raise MatchSyntaxError("one or more attributes required for Match")
    return result


# --- PermitListen ---------------------------------------------------------------------------


def _maxstartups(args: list[str]) -> str:
    """servconf.c sMaxStartups: ``start[:rate:full]``; ``N`` alone is ``N:30:N`` (as
    sshd -T prints it)."""
    if len(args) > 1:
        raise ValueError("extra arguments at end of line")
    parts = args[0].split(":")
    if not all(p.isdigit() for p in parts) or len(parts) not in (1, 3):
        raise ValueError(f'Invalid MaxStartups spec "{_shown(args[0])}"')
    start, rate, full = (int(parts[0]), 30, int(parts[0])) if len(parts) == 1 else map(int, parts)
    if start > full or start < 1 or rate > 100 or rate < 1:
        raise ValueError(f'Invalid MaxStartups spec "{_shown(args[0])}"')
    return f"{start}:{rate}:{full}"


def _permit_entries(args: list[str], listen: bool) -> list[str]:
    """Parse a ``PermitListen``/``PermitOpen`` line into what sshd stores (a bare port
    is ``*:port`` for PermitListen); raises ValueError with sshd's complaint."""
    if args[0] in ("any", "none"):
        if len(args) > 1:
            raise ValueError("extra arguments at end of line")
        return [args[0]]
    out: list[str] = []
    for arg in args:
        if arg == "":
            raise ValueError("empty argument")
        error = permit_error(arg, listen=listen)
        if error:
            raise ValueError(error)
        out.append(arg if ":" in arg or not listen else f"*:{arg}")
    return out



# --- the evaluator --------------------------------------------------------------------------


@dataclass
class EffectiveConfig:
    """The sshd configuration that applies to one connection.

    - ``values``: lower-case keyword -> value as ``sshd -T`` prints it (normalised, see
      :func:`normalise`), e.g. ``values["authorizedkeysfile"] ==
      ".ssh/authorized_keys .ssh/authorized_keys2"``; empty when ``error`` is set.
    - ``origin``: keyword -> ``"FILE:LINE"``, ``"default"`` or ``"sshd -T"``.
    - ``source``: where the answer came from, for people ("sshd -T (the server's own
      answer)" or "evaluated /etc/ssh/sshd_config").
    - ``problems``: lines sshd would reject, unreadable files, Include loops.
    - ``error``: set when nothing could be evaluated (the main file is unreadable).
    - ``notes``: guesses the answer rests on (the user's groups unknown, ...).
    """

    values: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    source: str = ""
    problems: list[str] = field(default_factory=list)
    error: str = ""
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # guesses made (unknown groups...)
    # Whose sshd this is, for the texts ("the server"; MK205: "this computer"), and its
    # main configuration file when it is not the platform's default (sshd -f FILE).
    place: str = "the server"
    main: str = ""
    build: ServerBuild = UNKNOWN_BUILD  # the sshd build the lines were judged for

    def get(self, keyword: str) -> str:
        keyword = keyword.lower()
        spec = KEYWORDS.get(keyword)
        return self.values.get(keyword, spec.default if spec else "")

    def where(self, keyword: str) -> str:
        """"set in FILE line N", "OpenSSH's default" or "as sshd -T reports it"."""
        origin = self.origin.get(keyword.lower(), ORIGIN_DEFAULT)
        if origin == ORIGIN_DEFAULT:
            return "OpenSSH's built-in default (no line sets it)"
        if origin == ORIGIN_ORACLE:
            return f"as {self.place}'s sshd -T reports it"
        path, _, line = origin.rpartition(":")
        return f"set in {path} line {line}"


NEVERMATCH, MATCH_ONLY = 1, 2


class _Pass:
    """One pass over the configuration (servconf.c ``parse_server_config``)."""

    def __init__(self, loader: Loader, conn: Optional[Connection], problems: Optional[list[str]],
                 files: list[str], sshdir: str, build: ServerBuild = UNKNOWN_BUILD,
                 usedns: str = "no", notes: Optional[list[str]] = None,
                 sshd_home: str = "/root") -> None:
        self.build = build
        self.usedns = usedns  # the global UseDNS (first pass): which host Match Host sees
        self.notes = notes
        self.sshd_home = sshd_home
        self.loader = loader
        self.conn = conn  # None: the first pass
        self.problems = problems  # None: do not report (the second pass sees the same lines)
        self.files = files
        self.sshdir = sshdir.rstrip("/")
        self.values: dict[str, str] = {}
        self.origin: dict[str, str] = {}
        self.active = conn is None

    def problem(self, text: str) -> None:
        if self.problems is not None and text not in self.problems:
            self.problems.append(text)

    def note(self, text: str) -> None:
        if self.notes is not None and text not in self.notes:
            self.notes.append(text)

    def run_file(self, path: str, text: str, flags: int, depth: int, chain: tuple[str, ...]) -> None:
        for number, line in enumerate(_lines(text), start=1):
            try:
                flags = self.line(path, number, line, flags, depth, chain)
            except Exception as exc:  # noqa: BLE001 - never crash on a hostile file
                self.problem(f"{path} line {number}: could not be evaluated ({exc})")
        # the included file's Match state does not leak into the including file

    def line(self, path: str, number: int, line: str, flags: int, depth: int,
             chain: tuple[str, ...]) -> int:
        where = f"{path} line {number}"
        line = line.rstrip(" \t\r\n\f")
        keyword, rest = strdelim(line)
        if keyword == "":
            keyword, rest = strdelim(rest)
        if not keyword or keyword.startswith("#"):
            return flags
        if rest is None or rest == "":
            self.problem(f'{where}: no argument after keyword "{keyword}"')
            return flags
        kw = keyword.lower()
        status = keyword_status(kw, self.build)
        if status.kind == UNKNOWN:
            self.problem(f'{where}: unknown keyword "{_shown(keyword)}" for '
                         f"{self.build.describe()} (sshd refuses to start: Bad configuration "
                         "option)")
            return flags
        if status.kind == DEPENDS and status.may_refuse and self.conn is None:
            self.note(f"{where}: {keyword}: {status.why}")
        if kw == "match":
            try:
                value = match_line(rest, None if flags & NEVERMATCH else self.conn, self.usedns)
            except MatchSyntaxError as exc:
                self.problem(f"{where}: bad Match condition: {exc}")
                value = 0
            self.active = False if flags & NEVERMATCH else bool(value)
            return flags & ~MATCH_ONLY
        try:
            args = argv_split(rest)
        except QuoteError:
            self.problem(f"{where}: invalid quotes")
            return flags
        if not self.active and status.in_match is False:
            if self.conn is None:
                self.problem(f"{where}: {keyword} is not allowed within a Match block "
                             "(sshd refuses to start)")
            return flags
        if status.kind in (DEPRECATED, IGNORED, UNSUPPORTED):
            if self.conn is None and status.kind != IGNORED:
                word = "Unsupported" if status.kind == UNSUPPORTED else "Deprecated"
                self.note(f'{where}: {word} option {keyword}: {self.build.describe()} logs '
                          f'"{word} option" and ignores the line (it starts)')
            return flags
        if kw == "include":
            self.include(where, args, flags, depth, chain)
            return flags
        if kw in ALGORITHM_KINDS and args and self.conn is None:
            refusal, note = algorithm_list_verdict(keyword, args[0], self.build)
            if refusal:
                self.problem(f"{where}: {refusal} (sshd refuses to start)")
            elif note:
                self.note(f"{where}: {note}")
        kw = ALIASES.get(kw, kw)
        spec = KEYWORDS.get(kw)
        if spec is None:
            return flags  # a keyword we do not evaluate
        try:
            value = _parse_value(kw, spec, args, kw in self.values, self.active, rest,
                                 self.sshd_home)
        except ValueError as exc:
            self.problem(f"{where}: {keyword}: {exc}")
            return flags
        if self.active and kw in ACCUMULATE:
            old = self.values.get(kw)
            self.values[kw] = value if old is None else f"{old} {value}"
            self.origin.setdefault(kw, f"{path}:{number}")
        elif self.active and kw not in self.values:
            self.values[kw] = value
            self.origin[kw] = f"{path}:{number}"
        return flags

    def include(self, where: str, args: list[str], flags: int, depth: int,
                chain: tuple[str, ...]) -> None:
        if not args:
            self.problem(f"{where}: Include without a file name")
            return
        outer = self.active
        if flags & MATCH_ONLY:
            sub_flags = MATCH_ONLY
        else:
            sub_flags = 0 if outer else NEVERMATCH
        for arg in args:
            if arg == "":
                self.problem(f"{where}: Include with an empty argument")
                continue
            pattern = arg if arg.startswith(("/", "~")) else f"{self.sshdir}/{arg}"
            for path in self.loader.glob(pattern):
                self.active = outer
                if path in chain or depth + 1 > MAX_DEPTH:
                    loop = " -> ".join((*chain, path)) if path in chain else where
                    self.problem(f"{where}: Include loop ({loop}); sshd refuses to start: "
                                 "Too many recursive configuration includes")
                    continue
                text = self.read(path, where)
                if text is not None:
                    self.run_file(path, text, sub_flags, depth + 1, (*chain, path))
            self.active = outer

    def read(self, path: str, where: str) -> Optional[str]:
        try:
            text = self.loader.read(path)
        except FileUnavailable as exc:
            self.problem(f"{where}: cannot read {path}: {exc} (sshd refuses to start)")
            return None
        if path not in self.files:
            self.files.append(path)
        if "\x00" in text:
            self.problem(f"{path}: contains NUL bytes (binary data, not a text file)")
        if "\ufffd" in text:
            self.problem(f"{path}: contains bytes that are not text (invalid UTF-8)")
        return text


def _shown(word: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in word)
    return text if len(text) <= 40 else text[:37] + "..."


def _lines(text: str) -> list[str]:
    """servconf.c ``load_server_config``: leading spaces, tabs and CRs are dropped, and a
    NUL ends the line's text and swallows its newline (C strings); then split on LF."""
    parts: list[str] = []
    for raw in text.split("\n"):
        raw = raw.lstrip(" \t\r")
        if "\x00" in raw:
            parts.append(raw.split("\x00", 1)[0])  # the newline is lost with the NUL
        else:
            parts.append(raw + "\n")
    joined = "".join(parts)
    if joined.endswith("\n"):
        joined = joined[:-1]
    return joined.split("\n")


def tilde_expand(path: str, home: str) -> str:
    """misc.c ``tilde_expand_filename`` as sshd applies it while READING the file (for
    ``AuthorizedKeysFile`` and ``AuthorizedPrincipalsFile``): ``~/x`` is the home of the
    user sshd runs as (root: ``home``), not of the user logging in (checked with sshd -T:
    ``AuthorizedKeysFile ~/.ssh/ak`` is ``/root/.ssh/ak``). ``~name/x`` needs name's
    home from the server's passwd database: left as written."""
    if path == "~" or path.startswith("~/"):
        return home.rstrip("/") + path[1:] if home != "/" else path[1:] or "/"
    return path


def _parse_value(kw: str, spec: Keyword, args: list[str], already_set: bool = False,
                 active: bool = True, rest: str = "", sshd_home: str = "/root") -> str:
    if not args:
        raise ValueError("missing argument")
    if spec.kind == "rest":
        # servconf.c sForceCommand: the rest of the line as written, leading blanks cut
        return rest.lstrip(" \t")
    if spec.kind == "word":
        if len(args) > 1:
            raise ValueError("extra arguments at end of line")
        return args[0]
    if spec.kind == "port":
        if len(args) > 1:
            raise ValueError("extra arguments at end of line")
        if valid_port(args[0]) is None:
            raise ValueError("Badly formatted port number")
        return str(int(args[0]))
    if spec.kind == "maxstartups":
        return _maxstartups(args)
    if spec.kind == "permitopen":
        return " ".join(_permit_entries(args, listen=False))
    if kw == "authorizedkeysfile":
        args = [tilde_expand(a, sshd_home) for a in args]
    if spec.kind == "choice":
        assert spec.choices is not None
        value = spec.choices.get(args[0].lower())
        if value is None:
            raise ValueError(f'unsupported option "{_shown(args[0])}"')
        if len(args) > 1:
            raise ValueError("extra arguments at end of line")
        return value
    if spec.kind == "permitlisten":
        return " ".join(_permit_entries(args, listen=True))
    if any(a == "" for a in args):
        raise ValueError("empty argument")
    if spec.kind == "authmethods":
        # servconf.c: "any" is refused once a method list is stored (even by an earlier
        # line), and anything after "any" is refused.
        stored = 1 if already_set else 0
        seen_any = False
        for arg in args:
            if arg == "any":
                if stored:
                    raise ValueError('"any" must appear alone')
                seen_any = True
            elif seen_any:
                raise ValueError('"any" must appear alone')
            if not already_set and active:
                stored += 1
    return " ".join(args)


def evaluate(main: str, loader: Union[Loader, Mapping[str, str]], conn: Connection,
             sshdir: str = SSHDIR, source: str = "", build: ServerBuild = UNKNOWN_BUILD,
             sshd_home: str = "/root") -> EffectiveConfig:
    """The effective configuration for ``conn`` of the sshd reading ``main``.

    ``build``: which sshd runs (:func:`mkdoctor.openssh.keywords.parse_banner` of the
    server's banner): keywords are judged as that build does (deprecated, unsupported,
    vendor keywords); with an unknown build, a keyword that only some builds know is
    noted as depending on the build. ``sshd_home``: the home of the user sshd runs as
    (``~`` in AuthorizedKeysFile, expanded when the file is read).

    ``loader`` is a :class:`Loader` or a plain mapping path -> text (globs then match
    the mapping's paths). Never raises: problems are listed in the result, and a main
    file that cannot be read sets ``error``.
    """
    if not hasattr(loader, "read"):
        loader = MappingLoader(dict(loader))  # type: ignore[arg-type]
    problems: list[str] = []
    files: list[str] = []
    result = EffectiveConfig(source=source or f"evaluated {main}", problems=problems, files=files)
    first = _Pass(loader, None, problems, files, sshdir, build, notes=result.notes,
                  sshd_home=sshd_home)
    try:
        text = loader.read(main)  # type: ignore[union-attr]
    except FileUnavailable as exc:
        result.error = f"cannot read {main}: {exc}"
        return result
    files.append(main)
    if "\x00" in text:
        problems.append(f"{main}: contains NUL bytes (binary data, not a text file)")
    if "\ufffd" in text:
        problems.append(f"{main}: contains bytes that are not text (invalid UTF-8)")
    if conn.groups is None:
        result.notes.append(f"the groups of {conn.user} are unknown: Match Group blocks were "
                        "taken as not matching")
    first.run_file(main, text, 0, 0, (main,))
    usedns = first.values.get("usedns", KEYWORDS["usedns"].default)  # global only
    if usedns == "yes" and conn.host == conn.addr:
        result.notes.append("UseDNS yes: sshd matches Match Host against the client's name "
                            "from reverse DNS, which is not known here (and is chosen by "
                            "whoever controls that address's reverse zone)")
    second = _Pass(loader, conn, problems, files, sshdir, build, usedns, sshd_home=sshd_home)
    second.run_file(main, text, MATCH_ONLY, 0, (main,))
    for kw, spec in KEYWORDS.items():
        if kw in second.values and keyword_status(kw, build).in_match is not False:
            # copy_set_server_options
            result.values[kw], result.origin[kw] = second.values[kw], second.origin[kw]
        elif kw in first.values:
            result.values[kw], result.origin[kw] = first.values[kw], first.origin[kw]
        else:
            result.values[kw], result.origin[kw] = spec.default, ORIGIN_DEFAULT
    _check_auth_methods(first, result)
    result.build = build
    return result


_METHOD_SWITCH = {"publickey": "pubkeyauthentication", "password": "passwordauthentication",
                  "keyboard-interactive": "kbdinteractiveauthentication"}


def _check_auth_methods(first: "_Pass", cfg: EffectiveConfig) -> None:
    """sshd refuses to start when no ``AuthenticationMethods`` list can be satisfied by
    the enabled methods (sshd.c, with auth2.c ``auth2_methods_valid``: "AuthenticationMethods
    cannot be satisfied by enabled authentication methods"). It checks once, at start-up,
    on the global settings: the first pass, where only ``Match All`` blocks apply; what the
    Match blocks of a connection change later is not checked (measured with sshd -T -C)."""
    def value(kw: str) -> str:
        return first.values.get(kw, KEYWORDS[kw].default)

    lists = value("authenticationmethods").split()
    if lists == ["any"]:
        return

    def usable(method_list: str) -> bool:
        for method in method_list.split(","):
            switch = _METHOD_SWITCH.get(method.split(":", 1)[0])
            if switch and value(switch) == "no":
                return False
        return True

    if not any(usable(m) for m in lists):
        path, _, line = first.origin.get("authenticationmethods", "").rpartition(":")
        cfg.problems.append(
            f"AuthenticationMethods {' '.join(lists)} (set in {path} line {line}) cannot be "
            "satisfied by the enabled authentication methods (sshd refuses to start)")


@dataclass
class MappingLoader:
    """A :class:`Loader` over a mapping path -> text; globs match the mapping's paths."""

    files: dict[str, str]

    def read(self, path: str) -> str:
        if path not in self.files:
            raise FileUnavailable("no such file")
        return self.files[path]

    def glob(self, pattern: str) -> list[str]:
        if not _has_magic(pattern):
            return [pattern] if pattern in self.files else []
        import fnmatch

        def ok(path: str) -> bool:
            parts, pats = path.split("/"), pattern.split("/")
            return len(parts) == len(pats) and all(
                fnmatch.fnmatchcase(a, b) and not (a.startswith(".") and not b.startswith("."))
                for a, b in zip(parts, pats))

        return sorted(p for p in self.files if ok(p))


# --- what sshd -T prints --------------------------------------------------------------------


def parse_sshd_t(text: str) -> dict[str, str]:
    """``sshd -T`` output -> lower-case keyword -> value (normalised; a keyword printed on
    several lines, such as ``listenaddress``, keeps its values joined by spaces)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and re.fullmatch(r"[a-z0-9]+", key):
            out.setdefault(key, []).append(value.strip())
    return {k: normalise(k, " ".join(v)) for k, v in out.items()}


def oracle_config(text: str, source: str) -> EffectiveConfig:
    """An :class:`EffectiveConfig` from ``sshd -T`` output."""
    values = parse_sshd_t(text)
    return EffectiveConfig(values=values, origin={k: ORIGIN_ORACLE for k in values},
                           source=source)


# --- verdicts shared by MK310/MK311 (remote) and MK205 (the laptop) -------------------------


@dataclass(frozen=True)
class PolicyVerdict:
    """A check's judgement of a server policy (pass/warn/fail, a summary and the fix).
    Not known_hosts.HostKeyVerdict (what ssh makes of a host key) nor
    firewall.FirewallVerdict (one firewall's view of the link ports)."""

    status: str  # pass | warn | fail
    summary: str
    fix: str = ""
    details: tuple[str, ...] = ()


def root_login_verdict(cfg: EffectiveConfig, restart: str) -> PolicyVerdict:
    """MK310 (and MK205): ``PermitRootLogin`` no -> pass; prohibit-password /
    forced-commands-only -> warn; yes -> fail. ``restart`` is how to apply a change."""
    value = cfg.get("permitrootlogin")
    where = cfg.where("permitrootlogin")
    fix = setting_fix("PermitRootLogin", "no", cfg, restart)
    if value == "no":
        return PolicyVerdict("pass", f"PermitRootLogin no ({where})")
    if value == "yes":
        return PolicyVerdict("fail", f"root may log in, even with a password (PermitRootLogin yes, {where})",
                       fix)
    what = {"prohibit-password": "root may log in with a key (PermitRootLogin prohibit-password)",
            "forced-commands-only": "root may log in with a key that has a forced command "
                                    "(PermitRootLogin forced-commands-only)"}.get(
        value, f"PermitRootLogin {value}")
    return PolicyVerdict("warn", f"{what}, {where}", fix)


def passwords_enabled(cfg: EffectiveConfig) -> list[str]:
    """The ways a password alone can log in: ``PasswordAuthentication yes``, or
    keyboard-interactive through PAM (``KbdInteractiveAuthentication yes`` with ``UsePAM
    yes``: PAM asks for the password; without PAM portable OpenSSH has no password
    device for it). Empty when every ``AuthenticationMethods`` list requires a key."""
    methods = cfg.get("authenticationmethods").split()
    if methods and methods != ["any"] and all("publickey" in m.split(",") for m in methods):
        return []
    ways = []
    if cfg.get("passwordauthentication") == "yes":
        ways.append(f"PasswordAuthentication yes ({cfg.where('passwordauthentication')})")
    if cfg.get("kbdinteractiveauthentication") == "yes" and cfg.get("usepam") == "yes":
        ways.append("KbdInteractiveAuthentication yes with UsePAM yes "
                    f"({cfg.where('kbdinteractiveauthentication')})")
    return ways


def password_verdict(cfg: EffectiveConfig, exposed: bool, exposure: str, restart: str) -> PolicyVerdict:
    """MK311 (and MK205): password logins on and reachable from the internet -> warn;
    on but only on a private network -> pass with a note; off -> pass. ``exposure``
    says why the server is (or is not) counted as reachable from the internet."""
    ways = passwords_enabled(cfg)
    if not ways:
        return PolicyVerdict("pass", "password logins are off (keys only)", details=(exposure,))
    details = tuple(f"password login is on: {w}" for w in ways) + (exposure,)
    keywords = ["PasswordAuthentication"]
    if any(w.startswith("KbdInteractive") for w in ways):
        keywords.append("KbdInteractiveAuthentication")
    fix = " ; ".join(setting_fix(k, "no", cfg, restart) for k in keywords)
    if exposed:
        return PolicyVerdict("warn", "password logins are on and the server is reachable from the "
                       "internet (passwords can be guessed)", fix, details)
    return PolicyVerdict("pass", "password logins are on, but only on a private network", fix, details)


def setting_fix(keyword: str, value: str, cfg: EffectiveConfig, restart: str) -> str:
    """How to set ``keyword value``: change the line that sets it now, or add a drop-in.
    The first value sshd reads wins, so a drop-in only helps when the main file
    Includes sshd_config.d before it sets the keyword itself."""
    origin = cfg.origin.get(keyword.lower(), ORIGIN_DEFAULT)
    check = f"sudo sshd -t && {restart}"
    place = cfg.place
    if cfg.main and cfg.main != DEFAULT_CONFIG:
        check = f"sudo sshd -t -f {shlex.quote(cfg.main)} && {restart}"
    if origin not in (ORIGIN_DEFAULT, ORIGIN_ORACLE):
        path, _, line = origin.rpartition(":")
        return f"on {place}, change line {line} of {path} to '{keyword} {value}', then {check}"
    if cfg.main and cfg.main != DEFAULT_CONFIG:
        # an sshd started with its own file: the distribution's drop-in directory is not
        # necessarily Included there
        return (f"on {place}: add the line '{keyword} {value}' near the top of {cfg.main} "
                f"(before any Match block: the first value sshd reads wins), then {check}")
    from mkdoctor.openssh.hardening import dropin_fix  # the one drop-in every fix names

    return dropin_fix(keyword, value, place, check)


def describe_source(cfg: EffectiveConfig) -> list[str]:
    """Detail lines: where the answer came from, guesses made, and the problems found."""
    lines = [f"source: {cfg.source}"]
    if len(cfg.files) > 1:
        lines.append("files read: " + ", ".join(cfg.files))
    lines += [f"note: {n}" for n in cfg.notes]
    lines += [f"problem: {p}" for p in cfg.problems]
    return lines


def to_result(verdict: PolicyVerdict, cfg: EffectiveConfig, **facts):
    """A check :class:`~mkdoctor.model.Result` from a verdict and the configuration it was
    drawn from: a pass becomes a warn when sshd would refuse the configuration."""
    from mkdoctor.model import Result, Status

    details = list(verdict.details) + describe_source(cfg)
    status, summary, fix = Status(verdict.status), verdict.summary, verdict.fix
    if cfg.problems and status == Status.PASS:
        status = Status.WARN
        summary = (f"{summary}, but the configuration has {len(cfg.problems)} problem(s): "
                   f"{cfg.problems[0]}")
        fix = "on the server, run: sudo sshd -t   and correct the lines it names"
    return Result(status, summary, details, fix, dict(facts))


# --- local I/O adapter (MK205 and tests; the evaluator itself does no I/O) -------------------


class LocalLoader:
    """A :class:`Loader` reading this computer's files."""

    def read(self, path: str) -> str:
        try:
            with open(path, "rb") as fh:
                data = fh.read(4 * 1024 * 1024)
        except IsADirectoryError:
            return ""
        except OSError as exc:
            raise FileUnavailable(exc.strerror or str(exc)) from None
        return data.decode("utf-8", "replace")

    def glob(self, pattern: str) -> list[str]:
        import glob
        import os

        if not _has_magic(pattern):
            return [pattern] if os.path.lexists(pattern) else []
        return sorted(glob.glob(pattern))


def local_loader() -> LocalLoader:
    return LocalLoader()

