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
    if not facts.sshd:
        return None, "no sshd program found on the remote host"
    argv = [facts.sshd, "-T", "-C", conn.spec()]
    if path != DEFAULT_CONFIG:
        argv += ["-f", path]
    attempts = [argv] + ([["sudo", "-n", *argv]] if facts.uid != 0 else [])
    why = ""
    for attempt in attempts:
        res = ctx.ssh.run(attempt, ctx.step_timeout())
        if res.exit_code == 0 and "permitrootlogin" in res.stdout:
            via = " via sudo" if attempt[0] == "sudo" else ""
            return oracle_config(res.stdout, SOURCE_ORACLE + via), ""
        text = (res.stderr.strip() or res.stdout.strip()).splitlines()
        reason = text[-1] if text else f"exit status {res.exit_code}"
        why = reason if not why else f"{why}; with sudo -n: {reason}"
    return None, why


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
    evaluate it here."""
    snap = Snapshot()
    wanted = {path}
    asked: set[str] = set()
    for _ in range(MAX_ROUNDS):
        globs, files = fetch(ctx, sorted(wanted))
        asked |= wanted
        snap.globs.update(globs)
        snap.files.update(files)  # type: ignore[arg-type]
        if path in wanted and path not in snap.files:
            snap.files[path] = FileUnavailable("No such file or directory")
        snap.wanted = set()
        cfg = evaluate(path, snap, conn, build=build)
        wanted = snap.wanted - asked
        if not wanted:
            return cfg
    cfg.notes.append(f"Include nesting deeper than {MAX_ROUNDS} levels: not all files were read")
    return cfg
