"""The remote sshd's effective configuration for our connection (MK305, MK310-MK312).

:func:`effective_sshd_config` answers once per run (``ctx.cached``), in this order:

1. **The oracle**: ``sshd -T -C user=...,host=...,addr=...,laddr=...,lport=...`` on the
   remote host (sshd(8): ``-T`` prints the effective configuration, ``-C`` gives the
   connection that ``Match`` blocks are tested against), as our user, then with
   ``sudo -n`` (``sshd -T`` loads the host keys, which only root may read). sshd is often
   outside a normal user's PATH, so ``/usr/sbin/sshd`` and friends are tried.
   The connection is ours: the user is ``id -un``, and the addresses and the server port
   come from ``$SSH_CONNECTION`` ("client_ip client_port server_ip server_port",
   sshd(8) ENVIRONMENT). The host is the client's address: sshd only looks the name up
   with ``UseDNS yes`` (default no).
2. **The evaluator** (:mod:`mkdoctor.openssh.sshd_config`) when the oracle is not permitted: the
   configuration files are read over ssh (the main file, then the files its ``Include``
   globs name, expanded by the remote shell in the C locale, in rounds until nothing new
   is needed), and evaluated here with the user's groups (``id -Gn``).

``EffectiveConfig.source`` says which one answered; ``origin`` which file and line set
each value (the oracle cannot tell: "sshd -T").
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from mkdoctor.openssh.sshd_config import (
    DEFAULT_CONFIG,
    Connection,
    EffectiveConfig,
    FileUnavailable,
    Snapshot,
    evaluate,
    oracle_config,
)
from mkdoctor.openssh.keywords import UNKNOWN_BUILD, ServerBuild, parse_banner
from mkdoctor.openssh.session import RemoteUnavailable

if TYPE_CHECKING:  # pragma: no cover
    from mkdoctor.context import Context

SOURCE_ORACLE = "sshd -T (the server's own answer)"
MAX_ROUNDS = 8  # Include levels fetched one round each (sshd allows 16, real configs use 1-2)

# Facts about our session on the remote host; a fixed script (nothing interpolated).
FACTS_SCRIPT = r"""
printf 'user=%s\n' "$(id -un 2>/dev/null)"
printf 'uid=%s\n' "$(id -u 2>/dev/null)"
printf 'groups=%s\n' "$(id -Gn 2>/dev/null)"
printf 'rootgroups=%s\n' "$(id -Gn root 2>/dev/null)"
printf 'conn=%s\n' "$SSH_CONNECTION"
p=$(command -v sshd 2>/dev/null)
if [ -z "$p" ]; then
  for c in /usr/sbin/sshd /usr/local/sbin/sshd /sbin/sshd /usr/bin/sshd; do
    if [ -x "$c" ]; then p=$c; break; fi
  done
fi
printf 'sshd=%s\n' "$p"
# the build of that sshd: sshd -V names the release ("OpenSSH_9.2"; older sshd print it
# with their usage), ssh -V of the same package also the vendor's revision ("OpenSSH_9.2p1
# Debian-2+deb12u6", observed on Debian 12, whose sshd -V omits it)
if [ -n "$p" ]; then printf 'sshdversion=%s\n' "$("$p" -V 2>&1 | grep -o 'OpenSSH_[^,]*' | head -n 1)"; fi
printf 'sshversion=%s\n' "$(ssh -V 2>&1 | grep -o 'OpenSSH_[^,]*' | head -n 1)"
{ ip -o addr show 2>/dev/null | awk '{print $4}' ; } | while read -r a; do printf 'addr=%s\n' "$a"; done
if ! command -v ip >/dev/null 2>&1; then
  for a in $(hostname -I 2>/dev/null); do printf 'addr=%s\n' "$a"; done
  ifconfig 2>/dev/null | awk '$1 ~ /^inet6?$/ {print "addr=" $2}'
fi
"""

# Prints each file the patterns ("$@" after the marker) match, framed by the marker.
# IFS is empty so a pattern is globbed but never split; the C locale sorts as glob(3).
FETCH_SCRIPT = r"""
LC_ALL=C; export LC_ALL
M=$1; shift
IFS=''
nl='
'
for pat in "$@"; do
  printf '%s GLOB\n%s\n' "$M" "$pat"
  for f in $pat; do
    case $f in *"$nl"*) continue ;; esac
    if [ ! -e "$f" ] && [ ! -L "$f" ]; then continue; fi
    printf '%s PATH\n%s\n' "$M" "$f"
    if [ -d "$f" ]; then printf '%s DIR\n' "$M"
    elif [ ! -e "$f" ]; then printf '%s MISSING\n' "$M"
    elif [ -r "$f" ]; then printf '%s DATA\n' "$M"; cat -- "$f"; printf '\n%s END\n' "$M"
    else printf '%s DENIED\n' "$M"; fi
  done
done
"""


@dataclass
class RemoteFacts:
    user: str = ""
    uid: Optional[int] = None
    groups: Optional[tuple[str, ...]] = None
    root_groups: Optional[tuple[str, ...]] = None
    client_addr: str = ""
    client_port: int = 0
    server_addr: str = ""
    server_port: int = 0
    sshd: str = ""
    sshd_version: str = ""  # "OpenSSH_9.2" (sshd -V)
    ssh_version: str = ""  # "OpenSSH_9.2p1 Debian-2+deb12u6" (ssh -V)
    addresses: list[str] = field(default_factory=list)


def parse_facts(text: str) -> RemoteFacts:
    """The output of :data:`FACTS_SCRIPT` (pure)."""
    facts = RemoteFacts()
    for line in text.splitlines():
        key, _, value = line.partition("=")
        value = value.strip()
        if key == "user":
            facts.user = value
        elif key == "uid" and value.isdigit():
            facts.uid = int(value)
        elif key == "groups" and value:
            facts.groups = tuple(value.split())
        elif key == "rootgroups" and value:
            facts.root_groups = tuple(value.split())
        elif key == "conn":
            parts = value.split()
            if len(parts) == 4 and parts[1].isdigit() and parts[3].isdigit():
                facts.client_addr, facts.server_addr = parts[0], parts[2]
                facts.client_port, facts.server_port = int(parts[1]), int(parts[3])
        elif key == "sshd":
            facts.sshd = value
        elif key == "sshdversion":
            facts.sshd_version = value
        elif key == "sshversion":
            facts.ssh_version = value
        elif key == "addr" and value:
            facts.addresses.append(value.split("/", 1)[0].split("%", 1)[0])
    return facts


def server_build(facts: RemoteFacts) -> ServerBuild:
    """The remote sshd's build (keywords are judged for it): the release from sshd -V,
    the vendor from ssh -V when it is the same release (the same source package)."""
    sshd, ssh = parse_banner(facts.sshd_version), parse_banner(facts.ssh_version)
    if sshd.version is None:
        return UNKNOWN_BUILD
    return ssh if ssh.version == sshd.version else sshd


def parse_fetch(text: str, marker: str) -> tuple[dict[str, list[str]], dict[str, object]]:
    """The output of :data:`FETCH_SCRIPT` -> (pattern -> paths, path -> text or
    :class:`FileUnavailable`) (pure)."""
    globs: dict[str, list[str]] = {}
    files: dict[str, object] = {}
    lines = text.split("\n")
    i, pattern, path = 0, None, None
    tag = marker + " "
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith(tag):
            continue
        what = line[len(tag):]
        if what == "GLOB" and i < len(lines):
            pattern = lines[i]
            i += 1
            globs.setdefault(pattern, [])
        elif what == "PATH" and i < len(lines):
            path = lines[i]
            i += 1
            if pattern is not None:
                globs[pattern].append(path)
        elif path is not None and what == "DIR":
            files[path] = ""  # sshd reads a directory as an empty file
        elif path is not None and what == "DENIED":
            files[path] = FileUnavailable("Permission denied")
        elif path is not None and what == "MISSING":
            files[path] = FileUnavailable("No such file or directory (a dangling link?)")
        elif path is not None and what == "DATA":
            body: list[str] = []
            end = marker + " END"
            while i < len(lines) and lines[i] != end:
                body.append(lines[i])
                i += 1
            i += 1
            files[path] = "\n".join(body)
    return globs, files


def remote_facts(ctx: "Context") -> RemoteFacts:
    """Who and where we are on the remote host (once per run)."""

    def compute() -> RemoteFacts:
        res = ctx.ssh.run(FACTS_SCRIPT, ctx.step_timeout())
        if res.exit_code is None:
            raise RemoteUnavailable("the remote host did not answer"
                                    + (" (timed out)" if res.timed_out else ""))
        return parse_facts(res.stdout)

    return ctx.cached("sshd-remote-facts", compute)


def connection_for(facts: RemoteFacts, user: Optional[str] = None) -> tuple[Connection, list[str]]:
    """The ``Match`` connection for ``user`` (default: ours) and notes on guesses."""
    notes: list[str] = []
    who = user or facts.user
    if who == facts.user:
        groups = facts.groups
    elif who == "root":
        groups = facts.root_groups
    else:
        groups = None
    addr, laddr, lport = facts.client_addr, facts.server_addr, facts.server_port
    if not addr:
        notes.append("$SSH_CONNECTION is not set on the remote host: Match Address, "
                     "LocalAddress and LocalPort were tested against 127.0.0.1 port 22")
        addr, laddr, lport = "127.0.0.1", "127.0.0.1", 22
    return Connection(who, addr, addr, laddr, lport, groups), notes


def effective_sshd_config(ctx: "Context", user: Optional[str] = None) -> EffectiveConfig:
    """The remote sshd's effective configuration for ``user`` (default: the user we log
    in as) connecting from our address, once per run. Raises
    :class:`~mkdoctor.openssh.session.RemoteUnavailable` when there is no connection."""
    key = "sshd-effective" if user is None else f"sshd-effective:{user}"
    return ctx.cached(key, lambda: _compute(ctx, user))


def _compute(ctx: "Context", user: Optional[str]) -> EffectiveConfig:
    if not ctx.ssh.connected:
        login = ctx.ssh.login(ctx.step_timeout(ctx.options.timeout * 2 + 2))
        if not login.ok:
            raise RemoteUnavailable("cannot log in to the remote host (see MK304 passwordless-login)")
    facts = remote_facts(ctx)
    conn, notes = connection_for(facts, user)
    path = ctx.options.sshd_config or DEFAULT_CONFIG
    cfg, why_not = try_oracle(ctx, facts, conn, path)
    if cfg is None:
        cfg = evaluate_remote(ctx, path, conn, server_build(facts))
        if why_not:
            cfg.source += f" (sshd -T was not possible: {why_not})"
    cfg.notes[:0] = notes
    return cfg


def try_oracle(ctx: "Context", facts: RemoteFacts, conn: Connection,
               path: str) -> tuple[Optional[EffectiveConfig], str]:
    """``sshd -T`` for ``conn``, plain then ``sudo -n``: (config, "") or (None, why)."""
    cfgs, why = oracle_many(ctx, facts, [conn], path)
    return (cfgs[0] if cfgs else None), why


class _OracleState:
    """Per run: the sshd_config paths for which ``sshd -T`` could not run (plain and with
    ``sudo -n``) and why. Whether it runs depends on our privileges and the server's host
    keys, not on the connection asked about, so the first view to ask (ours, or the
    stranger's) finds out while the others wait, and they do not ask again when it cannot
    run: one ssh command for all of them."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.tried: set[str] = set()
        self.refused: dict[str, str] = {}


def fetch(ctx: "Context", patterns: list[str]) -> tuple[dict[str, list[str]], dict[str, object]]:
    """Expand ``patterns`` on the remote host and read the files they match."""
    marker = "MKDF" + secrets.token_hex(8)
    res = ctx.ssh.run(["sh", "-c", FETCH_SCRIPT, "sh", marker, *patterns], ctx.step_timeout())
    if res.exit_code is None:
        raise RemoteUnavailable("reading the sshd configuration timed out"
                                if res.timed_out else "the remote host did not answer")
    return parse_fetch(res.stdout, marker)


def evaluate_remote(ctx: "Context", path: str, conn: Connection,
                    build: ServerBuild = UNKNOWN_BUILD) -> EffectiveConfig:
    """Read the configuration over ssh in rounds (main file, then its Includes, ...) and
    evaluate it here (the files read once per run: :func:`evaluate_many`)."""
    (cfg,), _ = evaluate_many(ctx, path, [conn], build=build)
    return cfg


class _RunFiles:
    """The remote sshd configuration files read so far in this run, shared by every view
    (ours for MK305/MK312, the stranger's for MK310/MK311): each file is fetched once.
    ``asked``: what was fetched already (a glob that matched nothing stays unmatched)."""

    def __init__(self) -> None:
        import threading

        self.snap = Snapshot()
        self.asked: set[str] = set()
        self.lock = threading.Lock()


# --- the connections a stranger would make (MK310, MK311) -----------------------------------

# sshd -T for each connection specification ("$@" after the marker, sshd and the file),
# one fetch; each answer framed by the marker and followed by sshd's exit status. When
# not every answer has status 0 and we are not root, the same again with ``sudo -n``
# (sshd run by sudo itself, as a narrow sudoers rule for sshd -T allows), after a line
# "MARKER SUDO": plain and sudo in one ssh command.
ORACLE_MANY_SCRIPT = r"""
M=$1; sshd=$2; f=$3; shift 3
ask() {
  how=$1; shift
  for spec in "$@"; do
    printf '%s SPEC\n' "$M"
    if [ -n "$f" ]; then $how "$sshd" -T -C "$spec" -f "$f" 2>&1; else $how "$sshd" -T -C "$spec" 2>&1; fi
    printf '\n%s RC %s\n' "$M" "$?"
  done
}
out=$(ask "" "$@")
printf '%s\n' "$out"
[ "$(id -u)" = 0 ] && exit 0
ok=$(printf '%s\n' "$out" | grep -c "^$M RC 0\$")
if [ "$ok" -lt "$#" ]; then
  printf '%s SUDO\n' "$M"
  ask "sudo -n" "$@"
fi
"""


def parse_oracle_many(text: str, marker: str) -> list[tuple[int, str]]:
    """The output of :data:`ORACLE_MANY_SCRIPT` -> [(exit status, output)] (pure)."""
    out: list[tuple[int, str]] = []
    body: Optional[list[str]] = None
    for line in text.split("\n"):
        if line == f"{marker} SPEC":
            body = []
        elif line.startswith(f"{marker} RC ") and body is not None:
            rc = line.rsplit(" ", 1)[-1]
            out.append((int(rc) if rc.isdigit() else 255, "\n".join(body)))
            body = None
        elif body is not None:
            body.append(line)
    return out


def oracle_many(ctx: "Context", facts: RemoteFacts, conns: list[Connection],
                path: str) -> tuple[Optional[list[EffectiveConfig]], str]:
    """``sshd -T -C`` for every connection in one ssh run (plain, then ``sudo -n`` in the
    same run): (configs in order, "") or (None, why not)."""
    if not facts.sshd:
        return None, "no sshd program found on the remote host"
    if not conns:
        return [], ""
    state = ctx.cached("sshd-oracle", _OracleState)
    with state.lock:  # the first view finds out whether sshd -T runs here at all
        if path in state.refused:
            return None, state.refused[path]
        if path not in state.tried:
            state.tried.add(path)
            cfgs, why, ran = _ask_sshd_T(ctx, facts, conns, path)
            if not ran:
                state.refused[path] = why
            return cfgs, why
    return _ask_sshd_T(ctx, facts, conns, path)[:2]


def _ask_sshd_T(ctx: "Context", facts: RemoteFacts, conns: list[Connection],
                path: str) -> tuple[Optional[list[EffectiveConfig]], str, bool]:
    """(configs or None, why not, whether sshd -T ran for any connection)."""
    marker = "MKDO" + secrets.token_hex(8)
    argv = ["sh", "-c", ORACLE_MANY_SCRIPT, "sh", marker, facts.sshd,
            "" if path == DEFAULT_CONFIG else path, *(c.spec() for c in conns)]
    res = ctx.ssh.run(argv, ctx.step_timeout())
    plain, sep, sudo = (res.stdout.partition(f"\n{marker} SUDO\n") if res.exit_code == 0
                        else ("", "", ""))
    rounds = [("", plain)] + ([(" via sudo", sudo)] if sep else [])
    why, answers = "", []
    for via, text in rounds:
        answers = parse_oracle_many(text, marker)
        if len(answers) == len(conns) and all(rc == 0 and "permitrootlogin" in out
                                              for rc, out in answers):
            return [oracle_config(out, SOURCE_ORACLE + via) for _, out in answers], "", True
        lines = [ln for rc, out in answers if rc for ln in out.splitlines() if ln.strip()]
        lines = lines or (res.stderr.strip() or res.stdout.strip()).splitlines()
        reason = lines[-1] if lines else f"exit status {res.exit_code}"
        why = reason if not why else f"{why}; with sudo -n: {reason}"
    return None, why, any(rc == 0 for rc, _ in answers)


def evaluate_many(ctx: "Context", path: str, conns: list[Connection],
                  build: ServerBuild = UNKNOWN_BUILD) -> tuple[list[EffectiveConfig], Snapshot]:
    """Evaluate every connection over ONE snapshot of the files (fetched in rounds; a
    file only one connection's Include reaches is fetched when it first asks), the
    keywords judged for the server's ``build``. The snapshot is the run's
    (:class:`_RunFiles`): a file another view fetched is not fetched again. The caller
    gets a copy of it to read on (the run's is changed by the other views under its lock)."""
    run_files = ctx.cached("sshd-files", _RunFiles)
    with run_files.lock:  # the views take turns: the second finds the files read
        snap, asked = run_files.snap, run_files.asked
        if path not in snap.files:
            globs, files = fetch(ctx, [path])
            snap.globs.update(globs)
            snap.files.update(files)  # type: ignore[arg-type]
            if path not in snap.files:
                snap.files[path] = FileUnavailable("No such file or directory")
        asked.add(path)
        for _ in range(MAX_ROUNDS):
            snap.wanted = set()
            cfgs = [evaluate(path, snap, conn, build=build) for conn in conns]
            wanted = snap.wanted - asked
            if not wanted:
                return cfgs, Snapshot(dict(snap.files), dict(snap.globs))
            globs, files = fetch(ctx, sorted(wanted))
            asked |= wanted
            snap.globs.update(globs)
            snap.files.update(files)  # type: ignore[arg-type]
        for cfg in cfgs:
            cfg.notes.append(f"Include nesting deeper than {MAX_ROUNDS} levels: not all files were read")
        return cfgs, Snapshot(dict(snap.files), dict(snap.globs))


def _ports(snap: Snapshot, paths: list[str]) -> list[int]:
    """The ``Port`` lines of the files read (sshd listens on each)."""
    from mkdoctor.openssh.sshd_config import strdelim

    ports: list[int] = []
    for p in paths:
        text = snap.files.get(p)
        if not isinstance(text, str):
            continue
        for raw in text.split("\n"):
            keyword, rest = strdelim(raw.strip(" \t\r"))
            if keyword and keyword.lower() == "port" and rest:
                word = rest.split()[0] if rest.split() else ""
                if word.isdigit() and 0 < int(word) < 65536:
                    ports.append(int(word))
    return ports


@dataclass
class StrangerView:
    """MK310/MK311's answer: the worst stranger connection and the configuration it
    gets (``cfg``, with the file and line that set each value where known)."""

    cfg: EffectiveConfig
    judged: "object"  # exposure.Judged
    facts: RemoteFacts
    candidates: int = 0
    notes: list[str] = field(default_factory=list)
    specs: list[str] = field(default_factory=list)  # every connection sshd -T can be asked about
    # why the drop-in mkdoctor advises would NOT win for some stranger ("" when it would,
    # or when nothing needs changing): predicted by the evaluator
    dropin_loses: str = ""


def stranger_view(ctx: "Context", role: str) -> StrangerView:
    """The worst connection a stranger can make (``role`` "root" for MK310, "user" for
    MK311), once per run. Raises RemoteUnavailable without a connection."""
    return ctx.cached(f"sshd-stranger:{role}", lambda: _stranger(ctx, role))


def _stranger(ctx: "Context", role: str) -> StrangerView:
    from mkdoctor.netinfo import classify
    from mkdoctor.openssh import exposure as ex

    if not ctx.ssh.connected:
        login = ctx.ssh.login(ctx.step_timeout(ctx.options.timeout * 2 + 2))
        if not login.ok:
            raise RemoteUnavailable("cannot log in to the remote host (see MK304 passwordless-login)")
    facts = remote_facts(ctx)
    path = ctx.options.sshd_config or DEFAULT_CONFIG
    notes: list[str] = []

    def internet(a: str) -> bool:
        try:
            return classify(a) in ("public", "documentation")
        except ValueError:
            return False

    public = [a for a in facts.addresses if internet(a)]
    if facts.server_addr and internet(facts.server_addr) and facts.server_addr not in public:
        public.insert(0, facts.server_addr)
    laddrs = tuple(public[:3]) or (facts.server_addr or "127.0.0.1",)
    own, _ = connection_for(facts)
    base = Connection("root" if role == "root" else own.user, ex.STRANGER_ADDRESSES[0],
                      ex.STRANGER_ADDRESSES[0], laddrs[0], facts.server_port or 22,
                      facts.root_groups if role == "root" else facts.groups)
    build = server_build(facts)
    (first,), snap = evaluate_many(ctx, path, [base], build=build)
    if first.error:
        cands = [ex.Candidate(base)]
        blocks: list = []
        cfgs = [first]
        notes.append("the configuration files are unreadable: only the plain stranger "
                     "connection was tested (no Match block is known)")
    else:
        ports = tuple(dict.fromkeys([facts.server_port or 22, *_ports(snap, first.files)]))
        reach = ex.Reach(laddrs, ports, first.get("usedns") == "yes")
        blocks = ex.match_blocks(first.files, snap.read)
        cands = ex.stranger_connections(role, blocks, reach, own.user, facts.groups,
                                        facts.root_groups)
        cfgs, snap = evaluate_many(ctx, path, [c.conn for c in cands], build=build)
    # The server's own answer, where it may be asked, replaces the evaluation (a member
    # of a group that we only assume exists cannot be asked about: the evaluator's
    # answer stays for those).
    asked = [i for i, c in enumerate(cands) if not c.made_up_groups]
    answers, why_not = oracle_many(ctx, facts, [cands[i].conn for i in asked], path)
    if answers is not None:
        for i, answer in zip(asked, answers):
            evaluated = cfgs[i]
            if evaluated.error:
                answer.notes += evaluated.notes
                cfgs[i] = answer
                continue
            for kw, value in answer.values.items():
                if kw in evaluated.values and evaluated.values[kw] != value:
                    evaluated.notes.append(f"{kw}: the evaluator said {evaluated.values[kw]}, "
                                           f"sshd -T says {value} (sshd -T is taken)")
                    evaluated.origin[kw] = answer.origin[kw]
                if kw in evaluated.values:
                    evaluated.values[kw] = value
            evaluated.source = answer.source + " with the file and line from evaluating " + path
    elif first.error:  # neither the files nor sshd -T: could not check
        first.source += f" (sshd -T was not possible: {why_not})"
        return StrangerView(first, ex.Judged(cands[0], first, 0), facts, 1, notes)
    elif why_not:
        for cfg in cfgs:
            cfg.source += f" (sshd -T was not possible: {why_not})"
    rank = ex.root_rank if role == "root" else ex.password_rank
    judged = ex.worst(list(zip(cands, cfgs)), rank, blocks)
    if judged.candidate.made_up_groups:
        notes.append(f"this assumes a user in group {','.join(judged.candidate.conn.groups or ())} "
                     "exists (an attacker picks such a user)")
    loses = ""
    if judged.rank and not first.error:
        keyword = "permitrootlogin" if role == "root" else rank(judged.cfg)[1]
        loses = predict_dropin(path, snap, [c.conn for c in cands], keyword, blocks)
    return StrangerView(judged.cfg, judged, facts, len(cands), notes,
                        [c.conn.spec() for c in cands if not c.made_up_groups], loses)


def with_dropin(snap: Snapshot, line: str) -> Snapshot:
    """A copy of ``snap`` with mkdoctor's drop-in holding ``line`` first (as the setup
    writes it: its lines first, the file's other lines after), where the globs that
    match its path list it (byte order, as glob(3) in the C locale)."""
    import fnmatch

    from mkdoctor.openssh.hardening import DROPIN

    files = dict(snap.files)
    old = files.get(DROPIN)
    files[DROPIN] = line + "\n" + (old if isinstance(old, str) else "")
    globs = {}
    for pattern, paths in snap.globs.items():
        parts, pats = DROPIN.split("/"), pattern.split("/")
        if len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pats)):
            paths = sorted(set(paths) | {DROPIN}, key=lambda p: p.encode("utf-8", "surrogateescape"))
        globs[pattern] = list(paths)
    return Snapshot(files=files, globs=globs)  # type: ignore[arg-type]


def predict_dropin(path: str, snap: Snapshot, conns: list[Connection], keyword: str,
                   blocks: list) -> str:
    """Why a ``keyword`` line in mkdoctor's drop-in would not win for one of ``conns``
    ("" when it wins for all), by evaluating the files with the drop-in added."""
    from mkdoctor.openssh import exposure as ex
    from mkdoctor.openssh.hardening import DROPIN, include_lines, loss_reason, spelled
    from mkdoctor.openssh.sshd_config import KEYWORDS

    spec = KEYWORDS.get(keyword)
    value = "no" if spec is None or spec.choices is None or "no" in spec.choices else spec.default
    trial = with_dropin(snap, f"{spelled(keyword)} {value}")
    main = snap.files.get(path)
    inc = include_lines(main, DROPIN) if isinstance(main, str) else []
    for conn in conns:
        cfg = evaluate(path, trial, conn)
        origin = cfg.origin.get(keyword, "default")
        if origin.rpartition(":")[0] == DROPIN:
            continue
        block = ex.block_of(blocks, origin)
        reason = loss_reason(spelled(keyword), origin, path, inc, block.label if block else "",
                             DROPIN)
        if reason:
            return reason
    return ""
