"""The connections a stranger would make to an sshd, and the worst case over them (pure).

MK310 and MK311 judge the server as an attacker meets it, not as mkdoctor's own login
does (a ``Match Address 10.0.0.0/8`` that turns passwords off for the LAN says nothing
about the internet). The connections:

- **the base**: from an internet address, to the address and port a stranger reaches
  (the server's public address, else the one we connect to), as root (MK310) or as a
  user that exists (MK311: our own user, whose name an attacker can guess or learn);
- **one per Match block**, built to match it where an attacker can: the attacker
  chooses the user name (``User``: a name the patterns accept; for MK310 it must be
  root) and thereby the user's groups (``Group``: a member of a group the patterns
  accept, assumed to exist), and, within reason, the source address (``Address``: one
  of :data:`STRANGER_ADDRESSES`, or an internet address inside a network of the list
  that spans at least a /8 (IPv4) or /16 (IPv6); a smaller named network, say the
  office's, is not where a stranger comes from). ``Host`` is the address unless
  ``UseDNS yes``, then a name in a domain the attacker owns (:data:`STRANGER_NAME`).
  ``LocalAddress`` and ``LocalPort`` are the server's: only the addresses and ports sshd
  listens on and a stranger reaches. ``RDomain`` is never the attacker's to pick.

Whether a built connection really matches is decided by the evaluator's own
``match_line`` (negated-only lists never match, as in sshd); each connection is then
evaluated in full (every block, first value wins), and :func:`worst` picks the one with
the most dangerous value, naming the ``Match`` block whose line set it.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from mkdoctor.openssh import sshd_config as sc

# Internet addresses a stranger may come from: spread over the address space, none in a
# private, shared, documentation or reserved range (tests and configurations use the
# documentation ranges for "the office" and "the laptop").
STRANGER_ADDRESSES = ("100.42.17.9", "45.79.112.203", "185.220.101.33", "2a01:4f8:c17:1a2::9")
STRANGER_NAME = "host.stranger.example"  # with UseDNS yes: a name the attacker owns
STRANGER_USER = "admin"  # a name bots try, for User lists made of wildcards only
MAX_CANDIDATES = 60
WIDE_V4, WIDE_V6 = 8, 16  # a network at least this wide is "anywhere"


@dataclass(frozen=True)
class Block:
    """One ``Match`` line of the configuration and the lines up to the next one."""

    path: str
    line: int
    criteria: str
    end: int  # the last line of the block

    @property
    def label(self) -> str:
        return f"Match {self.criteria} at {self.path}:{self.line}"

    def holds(self, path: str, line: int) -> bool:
        return path == self.path and self.line < line <= self.end


@dataclass(frozen=True)
class Reach:
    """What a stranger reaches on the server: the local addresses and ports of its
    connection, and whether sshd looks the client's name up (``UseDNS yes``)."""

    laddrs: tuple[str, ...]
    lports: tuple[int, ...]
    usedns: bool = False


@dataclass(frozen=True)
class Candidate:
    conn: sc.Connection
    block: Optional[Block] = None  # the block it was built for (None: the base)
    made_up_groups: bool = False  # groups chosen for a user we assume exists

    @property
    def who(self) -> str:
        return f"{self.conn.user} from {self.conn.addr}"


@dataclass
class Judged:
    candidate: Candidate
    cfg: sc.EffectiveConfig
    rank: int
    block: Optional[Block] = None  # the block whose line set the value judged
    origin: str = ""


def _file_lines(text: str) -> list[str]:
    return text.split("\n")


def match_blocks(paths: Sequence[str], read: Callable[[str], str]) -> list[Block]:
    """Every ``Match`` line of ``paths`` (the files the evaluator read), in order. A
    block ends at the next ``Match`` line or the end of its file (an included file's
    Match state does not leak into the including file)."""
    blocks: list[Block] = []
    for path in dict.fromkeys(paths):
        try:
            text = read(path)
        except Exception:  # noqa: BLE001 - unreadable files are the evaluator's problem
            continue
        lines = _file_lines(text)
        opened: Optional[tuple[int, str]] = None
        for number, raw in enumerate(lines, start=1):
            keyword, rest = sc.strdelim(raw.lstrip(" \t\r").rstrip(" \t\r\n\f"))
            if keyword == "":
                keyword, rest = sc.strdelim(rest)
            if not keyword or keyword.lower() != "match":
                continue
            if opened:
                blocks.append(Block(path, opened[0], opened[1], number - 1))
            opened = (number, " ".join((rest or "").split()))
        if opened:
            blocks.append(Block(path, opened[0], opened[1], len(lines)))
    return blocks


def block_of(blocks: Sequence[Block], origin: str) -> Optional[Block]:
    path, _, line = origin.rpartition(":")
    if not line.isdigit():
        return None
    return next((b for b in blocks if b.holds(path, int(line))), None)


def _criteria(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    s: Optional[str] = text
    while True:
        attrib, s = sc.strdelim(s)
        if not attrib or attrib.startswith("#"):
            return out
        if attrib.lower() == "all":
            out.append(("all", ""))
            return out
        arg, s = sc.strdelim(s)
        out.append((attrib.lower(), arg or ""))


def _names(patterns: str, fallback: str) -> list[str]:
    """Names a ``*``/``?`` pattern list accepts (a few; the caller tests them)."""
    out = [fallback]
    for p in patterns.split(","):
        if p and not p.startswith("!"):
            out += [p.replace("*", "x").replace("?", "x"), p.replace("*", "").replace("?", "x")]
    return [n for n in dict.fromkeys(out) if n and sc.match_pattern_list(n, patterns) == 1]


def _is_internet(ip) -> bool:
    return ip.is_global and not ip.is_multicast


def stranger_addresses(patterns: str = "") -> list[str]:
    """:data:`STRANGER_ADDRESSES` and, for each wide network an ``Address`` list names,
    an internet address inside it."""
    out = list(STRANGER_ADDRESSES)
    for entry in patterns.split(","):
        if entry.startswith("!") or "/" not in entry:
            continue
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if net.prefixlen > (WIDE_V4 if net.version == 4 else WIDE_V6):
            continue
        size = net.num_addresses
        for frac in (1 / 3, 1 / 2, 2 / 3, 1 / 7):
            ip = net.network_address + int(size * frac) + 9
            if ip in net and _is_internet(ip):
                out.append(str(ip))
                break
    return list(dict.fromkeys(out))


def _try(criteria: str, conn: sc.Connection) -> bool:
    try:
        return sc.match_line(criteria, conn) == 1
    except sc.MatchSyntaxError:
        return False


def stranger_connections(role: str, blocks: Sequence[Block], reach: Reach, user: str = "",
                         groups: Optional[tuple[str, ...]] = None,
                         root_groups: Optional[tuple[str, ...]] = None) -> list[Candidate]:
    """The base connection and one (or a few) per ``Match`` block an attacker can
    match. ``role`` "root" (MK310: the user is root) or "user" (MK311: any user; ``user``
    and ``groups`` are a real user's, ours)."""
    laddr, lport = reach.laddrs[0], reach.lports[0]
    base_user = "root" if role == "root" else (user or STRANGER_USER)
    base_groups = root_groups if role == "root" else groups

    def host_for(addr: str) -> str:
        return STRANGER_NAME if reach.usedns else addr

    first = STRANGER_ADDRESSES[0]
    out = [Candidate(sc.Connection(base_user, host_for(first), first, laddr, lport, base_groups))]
    for block in blocks:
        crit = _criteria(block.criteria)
        kinds = {k: v for k, v in crit}
        if "rdomain" in kinds:
            continue  # the routing domain is the server's
        users = [base_user]
        if "user" in kinds and role != "root":
            users = _names(kinds["user"], base_user) + _names(kinds["user"], STRANGER_USER)
            users = list(dict.fromkeys(users)) or [base_user]
        group_choices: list[tuple[Optional[tuple[str, ...]], bool]] = [(base_groups, False)]
        if "group" in kinds and role != "root":
            group_choices += [((g,), True) for g in _names(kinds["group"], "staff")]
        addrs = stranger_addresses(kinds.get("address", ""))
        hosts = [None] + ([h for h in _names(kinds["host"], STRANGER_NAME)] if
                          "host" in kinds and reach.usedns else [])
        found = 0
        for who, (grp, made_up), addr, host, la, lp in itertools.product(
                users, group_choices, addrs, hosts, reach.laddrs, reach.lports):
            conn = sc.Connection(who, host or host_for(addr), addr, la, lp, grp)
            if _try(block.criteria, conn):
                out.append(Candidate(conn, block, made_up))
                found += 1
                if found >= 3:
                    break
        if len(out) >= MAX_CANDIDATES:
            break
    seen: set = set()
    unique = []
    for c in out:
        if c.conn not in seen:
            seen.add(c.conn)
            unique.append(c)
    return unique[:MAX_CANDIDATES]


# --- ranking --------------------------------------------------------------------------------

ROOT_RANK = {"yes": 3, "forced-commands-only": 1, "prohibit-password": 2, "no": 0}


def root_rank(cfg: sc.EffectiveConfig) -> tuple[int, str]:
    """(how bad, the keyword whose line decided) for MK310."""
    return ROOT_RANK.get(cfg.get("permitrootlogin"), 2), "permitrootlogin"


def password_rank(cfg: sc.EffectiveConfig) -> tuple[int, str]:
    """(how bad, the keyword whose line decided) for MK311."""
    ways = sc.passwords_enabled(cfg)
    if not ways:
        return 0, "passwordauthentication"
    if cfg.get("passwordauthentication") == "yes":
        return 1, "passwordauthentication"
    return 1, "kbdinteractiveauthentication"


def worst(judged: Sequence[tuple[Candidate, sc.EffectiveConfig]], rank, blocks: Sequence[Block]
          ) -> Judged:
    """The worst candidate (the first among equals: the base connection comes first)."""
    best: Optional[Judged] = None
    for cand, cfg in judged:
        r, keyword = rank(cfg)
        origin = cfg.origin.get(keyword, "")
        j = Judged(cand, cfg, r, block_of(blocks, origin), origin)
        if best is None or j.rank > best.rank:
            best = j
    assert best is not None
    return best


def describe(j: Judged, keyword_value: str) -> str:
    """"Match Address !10.0.0.0/8 at FILE:LINE gives KEYWORD VALUE (for ...)" or the
    global line that gives it."""
    who = f"a stranger's login as {j.candidate.conn.user} from {j.candidate.conn.addr}"
    if j.block is not None:
        line = j.origin.rpartition(":")[2]
        return f"{j.block.label} gives {keyword_value} (line {line}) to {who}"
    return f"{who} gets {keyword_value}"
