"""Host keys and known_hosts, for MK303: parsing and the verdict (pure, except that
:func:`split_files` looks whether a path exists).

The programs are OpenSSH's own: ``ssh-keyscan`` fetches the server's keys and
``ssh-keygen -F NAME -f FILE`` looks the name up in a known_hosts file (it understands
hashed entries, ``[host]:port`` and wildcard patterns, and marks ``@revoked`` and
``@cert-authority`` lines). This module parses what they print and compares.

How ssh itself decides (sshconnect.c, check_host_key): it looks the host up under
``HostKeyAlias`` when set, else under ``host`` (port 22) or ``[host]:port``; it prefers
host key algorithms it already has keys for. A key of the negotiated type that differs
from the recorded one is "REMOTE HOST IDENTIFICATION HAS CHANGED"; recorded keys of
other types only is "keys of different type are already known for this host" and, with
``StrictHostKeyChecking``/BatchMode, "Host key verification failed". A key listed as
``@revoked`` is refused. Source: ssh(1) "VERIFYING HOST KEYS", sshd(8) "SSH_KNOWN_HOSTS
FILE FORMAT" (https://man.openbsd.org/sshd#SSH_KNOWN_HOSTS_FILE_FORMAT).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from mkdoctor.openssh.pubkey import fingerprint


@dataclass(frozen=True)
class HostKey:
    keytype: str
    blob: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


@dataclass(frozen=True)
class KnownEntry:
    """A known_hosts line that matches the host (as ``ssh-keygen -F`` printed it)."""

    path: str
    line: int
    key: HostKey
    marker: str = ""  # "", "revoked" or "cert-authority"
    hashed: bool = False


@dataclass
class HostKeyVerdict:
    """What ssh will make of the server's host key (not a check's pass/warn/fail: see
    sshd_config.PolicyVerdict for that)."""

    kind: str  # known, unknown, changed, other-types, revoked, cert-authority
    match: Optional[KnownEntry] = None
    server_key: Optional[HostKey] = None  # the key the verdict is about
    known: list[KnownEntry] = field(default_factory=list)  # the entries compared with


def lookup_name(host: str, port: int, alias: str = "") -> str:
    """The name ssh looks up in known_hosts (sshconnect.c: get_hostfile_hostname_ipaddr):
    HostKeyAlias as given, else ``host`` or ``[host]:port`` when the port is not 22."""
    if alias and alias.lower() != "none":
        return alias
    return host if port == 22 else f"[{host}]:{port}"


def split_files(value: str) -> list[str]:
    """The files of a ``UserKnownHostsFile``/``GlobalKnownHostsFile`` line of ``ssh -G``
    (``~`` and tokens already expanded, separated by blanks). ssh -G prints a path with
    a blank in it unquoted, so it is rebuilt from its pieces when the joined path
    exists (the one look at the file system here)."""
    parts = value.split()
    out: list[str] = []
    i = 0
    while i < len(parts):
        path, step = parts[i], 1
        if not os.path.exists(os.path.expanduser(path)):
            for j in range(i + 2, len(parts) + 1):
                joined = " ".join(parts[i:j])
                if os.path.exists(os.path.expanduser(joined)):
                    path, step = joined, j - i
                    break
        out.append(os.path.expanduser(path))
        i += step
    return [p for p in out if p.lower() != "none"]


def parse_keyscan(stdout: str) -> list[HostKey]:
    """Key lines of ``ssh-keyscan`` (``name keytype blob``); comments are skipped."""
    keys: list[HostKey] = []
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            key = HostKey(fields[1], fields[2])
            if key not in keys:
                keys.append(key)
    return keys


_FOUND = re.compile(r"^# Host \S+ found: line (\d+)\s*(\S*)")


def parse_keygen_find(stdout: str, path: str) -> list[KnownEntry]:
    """Entries printed by ``ssh-keygen -F NAME -f PATH``: a ``# Host NAME found: line N
    [REVOKED|CA]`` comment, then the line itself (hashed name, or ``@marker`` first)."""
    entries: list[KnownEntry] = []
    pending: Optional[tuple[int, str]] = None
    for line in stdout.splitlines():
        m = _FOUND.match(line)
        if m:
            pending = (int(m.group(1)), m.group(2).upper())
            continue
        if pending is None or not line.strip():
            continue
        fields = line.split()
        marker = ""
        if fields and fields[0].startswith("@"):
            marker = fields[0][1:].lower()
            fields = fields[1:]
        if len(fields) >= 3:
            if not marker and pending[1] == "REVOKED":
                marker = "revoked"
            elif not marker and pending[1] == "CA":
                marker = "cert-authority"
            entries.append(KnownEntry(path, pending[0], HostKey(fields[1], fields[2]), marker,
                                      hashed=fields[0].startswith("|1|")))
        pending = None
    return entries


def judge(server_keys: Sequence[HostKey], known: Sequence[KnownEntry]) -> HostKeyVerdict:
    """Compare the server's keys with the known_hosts entries for its name, the way ssh
    would (see the module docstring). ``server_keys`` (in ssh's preference order, see
    :func:`preferred`) must not be empty.

    ssh negotiates ONE host key: it moves the algorithms of the types it has plain
    (unmarked) known_hosts entries for to the front (sshconnect2.c
    ``order_hostkeyalgs``), then checks that key alone (hostfile.c
    ``check_hostkeys_by_key_or_type``, ``check_key_not_revoked``). An ``@revoked`` line
    revokes the key on it, not the host: a revoked key of a type ssh does not use does
    not stop the login."""
    plain = [e for e in known if not e.marker]
    cas = [e for e in known if e.marker == "cert-authority"]
    known_types = {e.key.keytype for e in plain}
    ordered = ([k for k in server_keys if k.keytype in known_types]
               + [k for k in server_keys if k.keytype not in known_types])
    key = ordered[0]
    for e in known:
        if e.marker == "revoked" and e.key == key:
            return HostKeyVerdict("revoked", e, key, list(known))
    same_type = [e for e in plain if e.key.keytype == key.keytype]
    for e in same_type:
        if e.key == key:
            return HostKeyVerdict("known", e, key, plain)
    if same_type:
        return HostKeyVerdict("changed", None, key, same_type)
    if plain:
        return HostKeyVerdict("other-types", None, key, plain)
    if cas:
        return HostKeyVerdict("cert-authority", cas[0], key, cas)
    return HostKeyVerdict("unknown", None, key, [])


# ssh-keyscan's names for the key types a known_hosts line records (ssh-keyscan(1) -t:
# dsa, ecdsa, ed25519, ecdsa-sk, ed25519-sk, rsa; "ecdsa" fetches whichever curve the
# server has, "rsa" the ssh-rsa key whatever the signature algorithm).
KEYSCAN_TYPES = {
    "ssh-ed25519": "ed25519",
    "ecdsa-sha2-nistp256": "ecdsa", "ecdsa-sha2-nistp384": "ecdsa", "ecdsa-sha2-nistp521": "ecdsa",
    "ssh-rsa": "rsa",
    "ssh-dss": "dsa",
    "sk-ssh-ed25519@openssh.com": "ed25519-sk",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ecdsa-sk",
}


def scan_types(known: Sequence[KnownEntry]) -> list[str]:
    """The ``ssh-keyscan -t`` types that decide :func:`judge`'s verdict, to fetch only
    those (each type is a connection and a key exchange of its own): the types of the
    plain entries, since ssh negotiates one of them whenever the server offers any. Given
    keys of those types, :func:`judge` decides as it would on every key the server has.
    [] means every type: no plain entry (the key to record is the server's preferred),
    or a type ssh-keyscan has no name for. When the server has none of these types the
    scan finds no key; the caller then scans every type (the verdict: other types)."""
    plain = [e for e in known if not e.marker]
    types = [KEYSCAN_TYPES.get(e.key.keytype) for e in plain]
    if not types or None in types:
        return []
    return sorted(set(t for t in types if t))


def keyscan_argv(host: str, port: int, wait_s: float, types: Sequence[str] = ()) -> list[str]:
    """``ssh-keyscan`` for ``host``'s keys of ``types`` (every type when empty, one
    connection each, all at once), each connection waiting at most ``wait_s``."""
    argv = ["ssh-keyscan", "-T", str(max(1, math.ceil(wait_s)))]
    argv += ["-t", ",".join(types)] if types else []
    return argv + ["-p", str(port), "--", host]


def keyscan_answered(stderr: str) -> bool:
    """The server answered ``ssh-keyscan`` (its banner comment, "# host:port SSH-2.0-…",
    is on stderr) even if it printed no key: it has none of the types asked for."""
    return any(ln.startswith("# ") for ln in stderr.splitlines())


def scan_host_keys(scan: Callable[[list[str]], Any], known: Sequence[KnownEntry]
                   ) -> tuple[list[HostKey], Any, list[str]]:
    """The server's keys, fetched as :func:`scan_types` says: ``scan(types)`` runs
    ``ssh-keyscan`` (:func:`keyscan_argv`) for those types, every type for [], and returns
    the finished program (``stdout``, ``stderr``). First the types ``known`` records; every
    type when the server answered but has none of them (the verdict is then "other types",
    not "could not fetch"); an unreachable server is not scanned twice. Returns (the keys
    in ssh's order, the last scan, the types it asked for)."""
    types = scan_types(known)
    done = scan(types)
    keys = preferred(parse_keyscan(done.stdout))
    if not keys and types and keyscan_answered(done.stderr):
        types = []
        done = scan(types)
        keys = preferred(parse_keyscan(done.stdout))
    return keys, done, types


def preferred(keys: Sequence[HostKey]) -> list[HostKey]:
    """The server's keys in ssh's default HostKeyAlgorithms order (ed25519, ecdsa,
    rsa), so that messages name the key ssh would use."""
    order = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "ssh-rsa"]
    return sorted(keys, key=lambda k: order.index(k.keytype) if k.keytype in order else len(order))
