"""What the laptop's firewall says about inbound TCP on the link ports (a heuristic).

Used by MK204 local-firewall. Each reader turns one firewall's own listing into a
:class:`FirewallVerdict` for the link ports: ``open``, ``closed`` or ``unknown``. The readers are
pure functions of the listing text (unit-tested); :func:`inspect` runs the programs.
Nothing here needs administrator rights: a listing that cannot be read is reported as
such (MK204 then skips). The model is deliberately simple — a new TCP connection from
an arbitrary outside address to the port — and the decisive test is MK403 link-path,
which connects for real.

Linux: ufw and firewalld when active (their view is what the user manages), else the
netfilter rules themselves (``iptables -S`` and ``nft list ruleset``). macOS: the
application firewall (socketfilterfw) and pf. Windows: ``netsh advfirewall``.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from mkdoctor.proc import Completed

Run = Callable[[Sequence[str]], Completed]

OPEN, CLOSED, UNKNOWN = "open", "closed", "unknown"


@dataclass
class FirewallVerdict:
    """One firewall's view of the link ports."""

    firewall: str  # "iptables", "nftables", "ufw", ...
    state: str  # open | closed | unknown
    reason: str  # one line: why
    open_command: str = ""  # the command that opens exactly the link ports
    notes: list[str] = field(default_factory=list)


def _in_spec(port: int, spec: str) -> bool:
    """``31415``, ``31415:31416``, ``31415-31416``, ``a,b,c:d`` or ``{ a, b-c }`` contains port?"""
    for part in re.split(r"[,\s{}]+", spec.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:[:\-](\d+))?", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if lo <= port <= hi:
                return True
    return False


def _combine(states: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """Per-port states -> one: closed if any port is closed, else unknown if any, else open."""
    for wanted in (CLOSED, UNKNOWN, OPEN):
        for state, reason in states:
            if state == wanted:
                return state, reason
    return UNKNOWN, "no ports"


# --- iptables ---------------------------------------------------------------------------

_BUILTIN = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}


def parse_iptables(text: str) -> tuple[dict[str, str], dict[str, list[list[str]]]]:
    """``iptables -S`` -> (policies, rules by chain as argument lists)."""
    policies: dict[str, str] = {}
    chains: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        try:
            args = shlex.split(line)
        except ValueError:
            continue
        if len(args) >= 3 and args[0] == "-P":
            policies[args[1]] = args[2]
            chains.setdefault(args[1], [])
        elif len(args) >= 2 and args[0] == "-N":
            chains.setdefault(args[1], [])
        elif len(args) >= 2 and args[0] == "-A":
            chains.setdefault(args[1], []).append(args[2:])
    return policies, chains


def _ipt_match(args: list[str], port: int) -> tuple[str, str, list[str]]:
    """Does the rule match a new TCP connection to ``port`` from anywhere, not on lo?

    Returns (yes|no|maybe, target, conditions we could not decide)."""
    target = ""
    maybe: list[str] = []
    i = 0
    neg = False
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if a == "!":
            neg = True
            i += 1
            continue
        if a in ("-j", "--jump", "-g", "--goto"):
            target = nxt
            break
        if a in ("-p", "--protocol"):
            is_tcp = nxt.lower() in ("tcp", "6", "all", "0")
            if is_tcp == neg:
                return "no", "", []
            i += 2
        elif a in ("-i", "--in-interface"):
            if nxt == "lo":
                if not neg:
                    return "no", "", []
            else:
                maybe.append(f"{'! ' if neg else ''}-i {nxt}")
            i += 2
        elif a in ("-s", "--source", "-d", "--destination"):
            if nxt not in ("0.0.0.0/0", "::/0") or neg:
                maybe.append(f"{a} {nxt}")
            i += 2
        elif a in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            if _in_spec(port, nxt) == neg:
                return "no", "", []
            i += 2
        elif a in ("--ctstate", "--state"):
            has_new = "NEW" in nxt.upper().split(",")
            if has_new == neg:
                return "no", "", []
            i += 2
        elif a == "-m":
            i += 2  # the module's own options are handled (or flagged) one by one
        elif a == "--comment":
            i += 2
        elif a.startswith("-"):
            # an option we do not model (--sport, -m limit options, --tcp-flags ...)
            j = i + 1
            vals = []
            while j < len(args) and not args[j].startswith("-") and args[j] != "!":
                vals.append(args[j])
                j += 1
            maybe.append(" ".join([a, *vals]))
            i = j
        else:
            i += 1
        neg = False
    return ("maybe" if maybe else "yes"), target, maybe


def iptables_port_state(text: str, port: int) -> tuple[str, str]:
    """Evaluate ``iptables -S`` (filter table) for a new TCP connection to ``port``."""
    policies, chains = parse_iptables(text)
    conditional: list[str] = []

    def walk(chain: str, depth: int) -> Optional[tuple[str, str]]:
        if depth > 20:
            return UNKNOWN, "chains nested too deeply"
        for args in chains.get(chain, []):
            how, target, cond = _ipt_match(args, port)
            if how == "no" or not target:
                continue
            rule = "-A " + chain + " " + shlex.join(args)
            if how == "maybe":
                if target == "ACCEPT":
                    conditional.append(f"{rule}")
                continue
            if target == "ACCEPT":
                return OPEN, f"accepted by: {rule}"
            if target in ("DROP", "REJECT"):
                return CLOSED, f"{'dropped' if target == 'DROP' else 'rejected'} by: {rule}"
            if target == "RETURN":
                return None
            if target in chains and target not in _BUILTIN:
                got = walk(target, depth + 1)
                if got is not None:
                    return got
        return None

    got = walk("INPUT", 0)
    if got is None:
        policy = policies.get("INPUT", "ACCEPT")
        if policy == "ACCEPT":
            got = OPEN, "INPUT policy ACCEPT and no rule drops it"
        else:
            got = CLOSED, f"INPUT policy {policy} and no rule accepts TCP port {port}"
    if got[0] == CLOSED and conditional:
        return UNKNOWN, f"accepted only under conditions: {conditional[0]}"
    return got


def iptables_open_command(ports: Sequence[int]) -> str:
    return " && ".join(f"sudo iptables -I INPUT -p tcp --dport {p} -j ACCEPT" for p in ports)


# --- nftables ----------------------------------------------------------------------------


@dataclass
class NftChain:
    family: str
    table: str
    name: str
    hook: str = ""
    policy: str = "accept"
    rules: list[str] = field(default_factory=list)


def parse_nft(text: str) -> list[NftChain]:
    """``nft list ruleset`` -> chains (sets, maps, flowtables and other objects skipped)."""
    chains: list[NftChain] = []
    family = table = ""
    current: Optional[NftChain] = None
    depth = 0
    skip_until: Optional[int] = None  # inside a set/map block: skip until back at this depth
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        delta = line.count("{") - line.count("}")
        if skip_until is not None:
            depth += delta
            if depth <= skip_until:
                skip_until = None
            continue
        m = re.match(r"table\s+(\S+)\s+(\S+)\s*\{$", line)
        if depth == 0 and m:
            family, table, depth = m.group(1), m.group(2), 1
            continue
        m = re.match(r"chain\s+(\S+)\s*\{$", line)
        if depth == 1 and m:
            current = NftChain(family, table, m.group(1))
            chains.append(current)
            depth = 2
            continue
        if depth == 1 and delta > 0:  # set, map, flowtable, ...
            skip_until = 1
            depth += delta
            continue
        if line == "}":
            depth -= 1
            if depth < 2:
                current = None
            continue
        if depth == 2 and current is not None:
            m = re.search(r"\btype\s+\S+\s+hook\s+([a-z]+)", line)
            if m:
                current.hook = m.group(1)
            p = re.search(r"\bpolicy\s+([a-z]+)", line)
            if p and (m or line.startswith("policy")):
                current.policy = p.group(1)
            if not (m or line.startswith("policy")):
                current.rules.append(line)
            continue
        depth += delta
    return chains


_VERDICTS = ("accept", "drop", "reject", "return", "jump", "goto", "queue")


def _nft_match(rule: str, family: str, port: int) -> tuple[str, str, str, list[str]]:
    """(yes|no|maybe, verdict, jump target, undecided conditions) for one nft rule."""
    # Flatten anonymous sets so that "{ 1, 2 }" is one token.
    text = re.sub(r"\{\s*([^}]*)\}", lambda m: "{" + re.sub(r"\s+", "", m.group(1)) + "}", rule)
    text = re.sub(r'comment\s+"[^"]*"', "", text)
    toks = text.split()
    verdict, target = "", ""
    maybe: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        after = toks[i + 2] if i + 2 < len(toks) else ""
        if t in _VERDICTS:
            verdict = t
            if t in ("jump", "goto"):
                target = nxt
            break
        if t == "counter":
            i += 1
            if nxt == "packets":
                i += 4
            continue
        if t == "log":
            i += 1
            while i < len(toks) and toks[i] in ("prefix", "level", "flags", "group"):
                i += 2
            continue
        if t in ("tcp", "th") and nxt in ("dport", "sport"):
            value, neg = after, False
            if value == "!=":
                neg, value = True, (toks[i + 3] if i + 3 < len(toks) else "")
            if nxt == "dport":
                if value.startswith("@"):
                    maybe.append(f"{t} dport {value}")
                elif _in_spec(port, value) == neg:
                    return "no", "", "", []
            else:
                maybe.append(f"{t} sport {value}")
            i += 4 if neg else 3
            continue
        if t in ("udp", "icmp", "icmpv6", "sctp", "dccp", "udplite"):
            return "no", "", "", []
        if t == "ip6" or (t == "meta" and nxt == "nfproto" and after == "ipv6"):
            return "no", "", "", []
        if t == "meta" and nxt == "nfproto":
            i += 3
            continue
        if (t == "meta" and nxt == "l4proto") or (t == "ip" and nxt == "protocol"):
            value = after
            if value == "!=":
                value = toks[i + 3] if i + 3 < len(toks) else ""
                ok = "tcp" not in value
                i += 4
            else:
                ok = "tcp" in value or value in ("6", "{6}")
                i += 3
            if not ok:
                return "no", "", "", []
            continue
        if t in ("iif", "iifname") or (t == "meta" and nxt in ("iif", "iifname")):
            if t == "meta":
                i += 1
            value = toks[i + 1] if i + 1 < len(toks) else ""
            if value == "!=":
                value = toks[i + 2] if i + 2 < len(toks) else ""
                if value.strip('"') != "lo":
                    maybe.append(f"iifname != {value}")
                i += 3
                continue
            if value.strip('"') == "lo":
                return "no", "", "", []
            maybe.append(f"iifname {value}")
            i += 2
            continue
        if t == "ct" and nxt == "state":
            value = after
            neg = value == "!="
            if neg:
                value = toks[i + 3] if i + 3 < len(toks) else ""
            if ("new" in value) == neg:
                return "no", "", "", []
            i += 4 if neg else 3
            continue
        # anything else (ip saddr, fib, limit, tcp flags, xt compat ...) is a condition
        maybe.append(t + (" " + nxt if nxt and nxt not in _VERDICTS else ""))
        i += 2 if nxt and nxt not in _VERDICTS else 1
        while i < len(toks) and toks[i] not in _VERDICTS and not re.match(r"^[a-z]+$", toks[i]):
            i += 1
    return ("maybe" if maybe else "yes"), verdict, target, maybe


def nft_port_state(text: str, port: int, skip_tables: Sequence[tuple[str, str]] = ()) -> tuple[str, str]:
    """Evaluate every base chain on the input hook (ip and inet families): the port is
    open only if each of them lets a new TCP connection in."""
    chains = parse_nft(text)
    by_name = {(c.family, c.table, c.name): c for c in chains}
    results: list[tuple[str, str]] = []

    def walk(chain: NftChain, depth: int, cond: list[str]) -> Optional[tuple[str, str]]:
        """The verdict of ``chain`` (None: falls through / returns to the caller)."""
        for rule in chain.rules:
            how, verdict, target, undecided = _nft_match(rule, chain.family, port)
            if how == "no" or not verdict:
                continue
            where = f"{chain.family} {chain.table} {chain.name}: {rule}"
            if how == "maybe":
                if verdict == "accept":
                    cond.append(where)
                continue
            if verdict == "accept":
                return OPEN, f"accepted by {where}"
            if verdict in ("drop", "reject"):
                return CLOSED, f"{'dropped' if verdict == 'drop' else 'rejected'} by {where}"
            if verdict == "return":
                return None
            if verdict in ("jump", "goto"):
                sub = by_name.get((chain.family, chain.table, target))
                got = walk(sub, depth + 1, cond) if sub is not None and depth < 20 else None
                if got is not None or verdict == "goto":
                    return got
        return None

    for chain in chains:
        if chain.hook != "input" or chain.family not in ("ip", "inet"):
            continue
        if (chain.family, chain.table) in skip_tables:
            continue
        cond: list[str] = []
        got = walk(chain, 0, cond)
        name = f"{chain.family} {chain.table} {chain.name}"
        if got is not None:
            results.append(got)
        elif chain.policy == "accept":
            results.append((OPEN, f"{name}: policy accept"))
        elif cond:
            results.append((UNKNOWN, f"{name}: policy {chain.policy}; accepted only under "
                                     f"conditions: {cond[0]}"))
        else:
            results.append((CLOSED, f"{name}: policy {chain.policy} and no rule accepts "
                                    f"TCP port {port}"))
    if not results:
        return OPEN, "no nftables input chain"
    return _combine(results)


def nft_open_command(ports: Sequence[int], chain: Optional[NftChain] = None) -> str:
    where = f"{chain.family} {chain.table} {chain.name}" if chain else "inet filter input"
    plist = ", ".join(map(str, ports))
    return f"sudo nft insert rule {where} tcp dport {{ {plist} }} accept"


# --- ufw ---------------------------------------------------------------------------------


def ufw_port_state(text: str, port: int) -> tuple[str, str]:
    """Evaluate ``ufw status verbose`` (the first matching rule wins, then the default)."""
    default = "deny"
    m = re.search(r"Default:\s*(\w+)\s*\(incoming\)", text)
    if m:
        default = m.group(1).lower()
    in_table = False
    for line in text.splitlines():
        if re.match(r"\s*--\s+-", line):
            in_table = True
            continue
        if not in_table or not line.strip() or "(v6)" in line:
            continue
        cols = re.split(r"\s{2,}", line.strip())
        if len(cols) < 2:
            continue
        to, action = cols[0], cols[1].upper()
        if "OUT" in action.split() or "FWD" in action.split():
            continue
        frm = cols[2] if len(cols) > 2 else "Anywhere"
        spec, _, proto = to.partition("/")
        spec = spec.split()[0] if spec else spec
        if proto and not proto.lower().startswith("tcp"):
            continue
        if spec != "Anywhere" and not re.fullmatch(r"[\d,:]+", spec):
            continue  # an application profile or an address: not modelled
        if spec != "Anywhere" and not _in_spec(port, spec):
            continue
        if action.startswith(("ALLOW", "LIMIT")):
            if frm.startswith("Anywhere"):
                return OPEN, f"ufw rule: {line.strip()}"
            return OPEN, f"ufw allows it only from {frm}: {line.strip()}"
        if action.startswith(("DENY", "REJECT")):
            return CLOSED, f"ufw rule: {line.strip()}"
    if default == "allow":
        return OPEN, "ufw default: allow (incoming)"
    return CLOSED, f"ufw default: {default} (incoming), no rule allows TCP port {port}"


def ufw_open_command(ports: Sequence[int]) -> str:
    return f"sudo ufw allow proto tcp to any port {','.join(map(str, ports))}"


# --- firewalld -----------------------------------------------------------------------------


def firewalld_port_state(text: str, port: int) -> tuple[str, str]:
    """Evaluate ``firewall-cmd --list-all`` (the default zone)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    target = fields.get("target", "default").upper()
    if target == "ACCEPT":
        return OPEN, "firewalld zone target ACCEPT"
    for item in fields.get("ports", "").split():
        spec, _, proto = item.partition("/")
        if proto == "tcp" and _in_spec(port, spec):
            return OPEN, f"firewalld port {item}"
    zone = text.strip().splitlines()[0].strip() if text.strip() else "the default zone"
    return CLOSED, f"firewalld zone {zone}: TCP port {port} not in its ports ({fields.get('ports') or 'none'})"


def firewalld_open_command(ports: Sequence[int]) -> str:
    adds = " ".join(f"--add-port={p}/tcp" for p in ports)
    return f"sudo firewall-cmd --permanent {adds} && sudo firewall-cmd --reload"


# --- Windows -------------------------------------------------------------------------------


def netsh_profile_state(text: str) -> tuple[bool, bool]:
    """``netsh advfirewall show currentprofile`` -> (firewall on, inbound blocked by default)."""
    on = bool(re.search(r"^\s*State\s+ON\b", text, re.M | re.I))
    policy = re.search(r"Firewall Policy\s+(\S+)", text, re.I)
    blocks = bool(policy and re.search(r"BlockInbound", policy.group(1), re.I))
    return on, blocks


def netsh_port_state(profile: str, rules: str, port: int) -> tuple[str, str]:
    """Inbound rules of ``netsh advfirewall firewall show rule name=all dir=in``: a
    matching block rule wins over an allow rule (Windows Firewall's precedence)."""
    on, blocks = netsh_profile_state(profile)
    if not on:
        return OPEN, "Windows Firewall is off for the current profile"
    allow = block = ""
    for block_text in re.split(r"\n\s*\n", rules):
        f: dict[str, str] = {}
        for line in block_text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                f[key.strip().lower()] = value.strip()
        if f.get("enabled", "").lower() != "yes" or f.get("protocol", "").upper() not in ("TCP", "ANY"):
            continue
        lp = f.get("localport", "")
        if lp.lower() != "any" and not _in_spec(port, lp):
            continue
        if f.get("action", "").lower() == "block":
            block = f.get("rule name", "?")
        elif f.get("action", "").lower() == "allow":
            allow = f.get("rule name", "?")
    if block:
        return CLOSED, f"blocked by the rule {block!r}"
    if allow:
        return OPEN, f"allowed by the rule {allow!r}"
    if not blocks:
        return OPEN, "the profile allows inbound connections by default"
    return CLOSED, (f"the profile blocks inbound by default and no port rule allows TCP {port} "
                    "(a per-program rule for the front end may still allow it)")


def netsh_open_command(ports: Sequence[int]) -> str:
    return ('netsh advfirewall firewall add rule name="Wolfram kernel link" dir=in action=allow '
            f"protocol=TCP localport={','.join(map(str, ports))}  (in an administrator prompt)")


# --- running the programs -------------------------------------------------------------------

_DENIED = re.compile(r"permission denied|operation not permitted|must be root|need to be root|"
                     r"not authorized|access is denied|requires elevation", re.I)


@dataclass
class Reading:
    """The verdicts of every firewall we could read, and what we could not read."""

    verdicts: list[FirewallVerdict] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "nft list ruleset: Operation not permitted"
    found: list[str] = field(default_factory=list)  # firewalls present


def _err(done: Completed) -> str:
    text = (done.stderr or done.stdout).strip().splitlines()
    return text[-1] if text else f"exit status {done.returncode}"


def _verdict(name: str, states: list[tuple[str, str]], cmd: str) -> FirewallVerdict:
    state, reason = _combine(states)
    return FirewallVerdict(name, state, reason, cmd, list(dict.fromkeys(r for _, r in states)))


def inspect(run: Run, ports: Sequence[int], system: Optional[str] = None) -> Reading:
    system = system or platform.system()
    if system == "Linux":
        return _inspect_linux(run, ports)
    if system == "Darwin":
        return _inspect_macos(run, ports)
    if system == "Windows":
        return _inspect_windows(run, ports)
    return Reading(unreadable=[f"firewall inspection is not implemented for {system}"])


# Where firewall programs live. A normal user's PATH on Debian and Ubuntu has no sbin
# directory, yet iptables, nft, ufw and pfctl are there and list rules for anyone allowed.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def program(name: str) -> Optional[str]:
    """The path of ``name``: on PATH, else in :data:`SBIN`; None when not installed."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def _inspect_linux(run: Run, ports: Sequence[int]) -> Reading:
    out = Reading()
    # ufw: when active, it is what the user manages.
    ufw = program("ufw")
    if ufw:
        out.found.append("ufw")
        done = run([ufw, "status", "verbose"])
        if done.returncode == 0 and "Status: active" in done.stdout:
            out.verdicts.append(_verdict("ufw", [ufw_port_state(done.stdout, p) for p in ports],
                                         ufw_open_command(ports)))
            return out
        if done.returncode != 0 and _ufw_enabled():
            out.unreadable.append(f"ufw is enabled but its rules need root to read "
                                  f"(sudo ufw status verbose): {_err(done)}")
            return out
    # firewalld: the same, when running.
    firewall_cmd = program("firewall-cmd")
    if firewall_cmd:
        out.found.append("firewalld")
        state = run([firewall_cmd, "--state"])
        if state.returncode == 0 and "running" in state.stdout and "not" not in state.stdout:
            done = run([firewall_cmd, "--list-all"])
            if done.returncode == 0:
                out.verdicts.append(_verdict(
                    "firewalld", [firewalld_port_state(done.stdout, p) for p in ports],
                    firewalld_open_command(ports)))
            else:
                out.unreadable.append(f"firewall-cmd --list-all: {_err(done)}")
            return out
    # The netfilter rules themselves.
    ipt_ok = nf_backend = False
    iptables = program("iptables")
    if iptables:
        out.found.append("iptables")
        done = run([iptables, "-w", "-S"])
        if done.returncode == 0:
            ipt_ok = True
            version = run([iptables, "-V"])
            nf_backend = "nf_tables" in version.stdout
            out.verdicts.append(_verdict("iptables", [iptables_port_state(done.stdout, p) for p in ports],
                                         iptables_open_command(ports)))
        else:
            out.unreadable.append(f"iptables -S: {_err(done)}")
    nft = program("nft")
    if nft:
        out.found.append("nftables")
        done = run([nft, "list", "ruleset"])
        if done.returncode == 0:
            # iptables-nft keeps its rules in "table ip filter": already judged above.
            skip = [("ip", "filter")] if (ipt_ok and nf_backend) else []
            chains = [c for c in parse_nft(done.stdout)
                      if c.hook == "input" and c.family in ("ip", "inet")
                      and (c.family, c.table) not in skip]
            if chains:
                out.verdicts.append(_verdict(
                    "nftables", [nft_port_state(done.stdout, p, skip) for p in ports],
                    nft_open_command(ports, chains[0])))
            elif not ipt_ok:
                out.verdicts.append(FirewallVerdict("nftables", OPEN, "no nftables input chain: nothing filters inbound"))
        else:
            out.unreadable.append(f"nft list ruleset: {_err(done)}")
    return out


def _ufw_enabled() -> bool:
    """/etc/ufw/ufw.conf is world-readable: ENABLED=yes means ufw filters at boot."""
    try:
        return bool(re.search(r"^\s*ENABLED\s*=\s*yes", Path("/etc/ufw/ufw.conf").read_text(), re.M))
    except OSError:
        return False


SOCKETFILTERFW = "/usr/libexec/ApplicationFirewall/socketfilterfw"


def _inspect_macos(run: Run, ports: Sequence[int]) -> Reading:
    out = Reading()
    if Path(SOCKETFILTERFW).exists():
        out.found.append("application firewall")
        g = run([SOCKETFILTERFW, "--getglobalstate"])
        if g.returncode == 0 and re.search(r"enabled|State = [12]", g.stdout, re.I):
            b = run([SOCKETFILTERFW, "--getblockall"])
            unblock = (f"sudo {SOCKETFILTERFW} --setblockall off; sudo {SOCKETFILTERFW} --add "
                       f"/Applications/Mathematica.app && sudo {SOCKETFILTERFW} --unblockapp "
                       "/Applications/Mathematica.app")
            if re.search(r"block all.*(enabled|on)|set to block all", b.stdout, re.I):
                out.verdicts.append(FirewallVerdict("application firewall", CLOSED,
                                            "the application firewall blocks all incoming connections",
                                            unblock))
            else:
                apps = run([SOCKETFILTERFW, "--listapps"])
                m = re.search(r"(Mathematica|Wolfram)[^\n]*\.app[^\n]*\n\s*\(\s*(Allow|Block)", apps.stdout)
                if m and m.group(2) == "Block":
                    out.verdicts.append(FirewallVerdict("application firewall", CLOSED,
                                                f"the application firewall blocks {m.group(1)}", unblock))
                else:
                    out.verdicts.append(FirewallVerdict(
                        "application firewall", OPEN,
                        "the application firewall is on; it allows the front end (or asks the "
                        "first time it listens)", unblock))
        elif g.returncode == 0:
            out.verdicts.append(FirewallVerdict("application firewall", OPEN, "the application firewall is off"))
        else:
            out.unreadable.append(f"socketfilterfw --getglobalstate: {_err(g)}")
    pfctl = program("pfctl")
    if pfctl:
        out.found.append("pf")
        done = run([pfctl, "-s", "rules"])
        if done.returncode != 0:
            out.unreadable.append(f"pfctl -s rules: {_err(done)}")
        else:
            states = []
            for p in ports:
                blocks = re.search(r"^block (drop |return )?in\b(?!.*port)", done.stdout, re.M)
                passes = re.search(rf"^pass in\b.*proto tcp.*port (= )?\{{?[^}}\n]*\b{p}\b", done.stdout, re.M)
                states.append((CLOSED, f"pf blocks inbound and no pass rule for port {p}")
                              if blocks and not passes else (OPEN, f"pf: port {p} not blocked"))
            out.verdicts.append(_verdict("pf", states,
                                         "add to /etc/pf.conf: pass in proto tcp to any port { "
                                         + " ".join(map(str, ports)) + " }  then: sudo pfctl -f /etc/pf.conf"))
    return out


def _inspect_windows(run: Run, ports: Sequence[int]) -> Reading:
    out = Reading(found=["Windows Firewall"])
    prof = run(["netsh", "advfirewall", "show", "currentprofile"])
    if prof.returncode != 0:
        out.unreadable.append(f"netsh advfirewall show currentprofile: {_err(prof)}")
        return out
    rules = run(["netsh", "advfirewall", "firewall", "show", "rule", "name=all", "dir=in"])
    text = rules.stdout if rules.returncode == 0 else ""
    out.verdicts.append(_verdict("Windows Firewall",
                                 [netsh_port_state(prof.stdout, text, p) for p in ports],
                                 netsh_open_command(ports)))
    return out
