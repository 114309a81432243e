"""What the wizard does to the keys: the host key, a new key pair, installing it.

Host keys (step 5): the server's keys come from ``ssh-keyscan``, the recorded ones from
``ssh-keygen -F`` on the known_hosts files ``ssh -G`` names, and :func:`mkdoctor.openssh.known_hosts.judge`
compares them as ssh would (the same code as MK303). An unknown key is recorded only
after the user confirmed its fingerprint (or ``--accept-host-key`` gave the same one); a
changed key is never accepted. The entry is hashed when ``HashKnownHosts`` is on, in
OpenSSH's format ``|1|base64(salt)|base64(HMAC-SHA1(salt, name))`` (hostfile.c,
host_hash; sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT").

Installing the public key (step 6) is one login: a ControlMaster started with the
terminal attached (:meth:`~mkdoctor.openssh.session.SSHClient.login_with_prompt`), so the
password is typed at ssh's own prompt and never passes through mkdoctor; unattended, it
runs with ``BatchMode=yes`` and works only when a login already works without a prompt.
Through that one session: where the server looks (:func:`authorized_keys_target`: the
first ``AuthorizedKeysFile`` for this user from ``sshd -T``, or the sshd configuration
read over the session and evaluated by :mod:`mkdoctor.openssh.sshd_config`, ``Match``
blocks included; default ``.ssh/authorized_keys``), then the remote script appends the
key only if absent, creates the directory 0700 and the file 0600 when missing, and keeps
every existing line. When the configuration cannot be read (the file or one of its
``Include``s is not readable by the user, as ``/etc/ssh/sshd_config`` 0600 on
RHEL/Fedora), the wizard says so in one line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from mkdoctor.openssh import known_hosts as hostkeys
from mkdoctor.proc import Completed

Run = Callable[[Sequence[str]], Completed]


def ssh_g(run: Run, destination: str, ssh_config: Optional[Path]) -> dict[str, str]:
    from mkdoctor.openssh.client_config import first_values, read_ssh_g

    return first_values(read_ssh_g(run, destination, ssh_config))


# --- host keys -----------------------------------------------------------------------------


@dataclass
class HostKeyState:
    verdict: str  # known, unknown, changed, other-types, revoked, cert-authority, unscannable
    name: str  # the known_hosts name (``[host]:port`` or HostKeyAlias)
    key: Optional[hostkeys.HostKey] = None  # the key to record / the one that changed
    known_files: list[str] = field(default_factory=list)
    hashed: bool = False
    error: str = ""

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint if self.key else ""


def recorded_keys(run: Run, cfg: dict[str, str]) -> list[hostkeys.KnownEntry]:
    """What the known_hosts files ``ssh -G`` names (``cfg``) record for the host (local
    files only: ``ssh-keygen -F``)."""
    name = hostkeys.lookup_name(cfg.get("hostname", ""), int(cfg.get("port", "22") or 22),
                                cfg.get("hostkeyalias", ""))
    known: list[hostkeys.KnownEntry] = []
    for path in (hostkeys.split_files(cfg.get("userknownhostsfile", "~/.ssh/known_hosts"))
                 + hostkeys.split_files(cfg.get("globalknownhostsfile", ""))):
        if os.path.exists(path):
            found = run(["ssh-keygen", "-F", name, "-f", path])
            known += hostkeys.parse_keygen_find(found.stdout, path)
    return known


def probe_host_key(run: Run, cfg: dict[str, str], timeout: float, destination: str = "",
                   ssh_config: Optional[Path] = None,
                   known: Optional[list[hostkeys.KnownEntry]] = None) -> HostKeyState:
    """The server's host key and how the recorded ones judge it. Reached directly: from
    ``ssh-keyscan``. Behind a ProxyCommand or ProxyJump (which ssh-keyscan cannot
    follow): from ssh itself through ``destination`` (:func:`key_through_ssh`). ``known``:
    :func:`recorded_keys` when the caller has read them already."""
    host = cfg.get("hostname", "")
    port = int(cfg.get("port", "22") or 22)
    name = hostkeys.lookup_name(host, port, cfg.get("hostkeyalias", ""))
    files = hostkeys.split_files(cfg.get("userknownhostsfile", "~/.ssh/known_hosts"))
    hashed = cfg.get("hashknownhosts", "no").lower() == "yes"
    state = HostKeyState("unscannable", name, known_files=files, hashed=hashed)
    proxied = any(cfg.get(k, "none").lower() != "none" for k in ("proxyjump", "proxycommand"))
    if proxied and destination:
        keys, error = key_through_ssh(run, destination, ssh_config, timeout)
    elif proxied:
        keys, error = [], "the host is reached through a ProxyJump or ProxyCommand"
    else:
        # the recorded keys' types only, as MK303 fetches them (scan_types: the same verdict
        # for a key exchange per recorded type instead of one per type the server has);
        # every type when nothing is recorded or the server has none of those any more
        known = recorded_keys(run, cfg) if known is None else known
        keys, done, _ = hostkeys.scan_host_keys(
            lambda types: run(hostkeys.keyscan_argv(host, port, timeout, types)), known)
        error = (done.stderr.strip().splitlines() or ["no answer"])[-1]
    if not keys:
        state.error = error
        return state
    verdict = hostkeys.judge(keys, recorded_keys(run, cfg) if known is None else known)
    state.verdict = verdict.kind
    state.key = verdict.server_key or keys[0]
    if proxied and destination and verdict.kind == "other-types":
        # ssh read the key with an empty known_hosts, so it negotiated its default type;
        # with the recorded files it would ask for the recorded type: let ssh decide.
        if strict_check_passes(run, destination, ssh_config, timeout):
            state.verdict = "known"
    return state


# Options for a connection that only reads the host key: it never authenticates (no
# method but password, and BatchMode forbids the prompt), never shares or leaves a
# master, and records the key in a private file only.
_KEY_ONLY = ("-o", "BatchMode=yes", "-o", "PreferredAuthentications=password",
             "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "PermitLocalCommand=no",
             "-o", "ClearAllForwardings=yes")


def key_through_ssh(run: Run, destination: str, ssh_config: Optional[Path], timeout: float
                    ) -> tuple[list[hostkeys.HostKey], str]:
    """The host key that ssh itself negotiates with ``destination``, through whatever
    ProxyCommand or ProxyJump the configuration gives (the jump host is checked and
    logged in to as ssh always does). ssh records it, with ``accept-new``, in a private
    empty known_hosts file that is read back and removed; the user's files are not
    touched and nothing is sent to the server beyond the key exchange (the connection
    stops at authentication). Returns (keys, the error when none was read)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mkd-hk-") as d:
        kh = os.path.join(d, "known_hosts")
        argv = ["ssh"] + (["-F", str(ssh_config)] if ssh_config else []) + [
            *_KEY_ONLY, "-o", f"ConnectTimeout={max(1, int(timeout))}",
            "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={kh}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HashKnownHosts=no",
            "-o", "UpdateHostKeys=no", "--", destination, "true"]
        done = run(argv)
        try:
            text = Path(kh).read_text(errors="replace")
        except OSError:
            text = ""
    keys = hostkeys.parse_keyscan(text)
    lines = [ln for ln in (done.stderr or "").strip().splitlines()
             if not ln.startswith(("Warning: Permanently added", "Permission denied"))]
    return keys, (lines[-1] if lines else "ssh read no host key")


def strict_check_passes(run: Run, destination: str, ssh_config: Optional[Path],
                        timeout: float) -> bool:
    """ssh, with the user's own known_hosts files and ``StrictHostKeyChecking=yes``,
    accepts the server's key (it goes on to authentication, which then stops)."""
    argv = ["ssh"] + (["-F", str(ssh_config)] if ssh_config else []) + [
        *_KEY_ONLY, "-o", f"ConnectTimeout={max(1, int(timeout))}",
        "-o", "StrictHostKeyChecking=yes", "--", destination, "true"]
    done = run(argv)
    return "Permission denied" in (done.stderr or "")


def hash_name(name: str, salt: Optional[bytes] = None) -> str:
    salt = salt if salt is not None else os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def known_hosts_line(state: HostKeyState) -> str:
    assert state.key is not None
    name = hash_name(state.name) if state.hashed else state.name
    return f"{name} {state.key.keytype} {state.key.blob}\n"


def record_host_key(state: HostKeyState, before_change: Callable[[Path], None]
                    ) -> tuple[Path, Optional[Path]]:
    """Add the key to the first UserKnownHostsFile: the old content byte for byte, then
    the new line. An existing file is first copied to a timestamped backup (same mode)
    and then replaced atomically, keeping its mode (a symlink is written through); a new
    one is created 0600 in a 0700 directory. ``before_change`` is told of the file and
    of the backup, so a rollback restores the one and removes the other. Returns (the
    file, the backup or None)."""
    from mkdoctor.fileio import atomic_write, resolve_target
    from mkdoctor.wizard.writers import backup_path, timestamp

    path = Path(state.known_files[0] if state.known_files else "~/.ssh/known_hosts").expanduser()
    before_change(path)
    target = resolve_target(path)
    if not target.parent.exists():
        target.parent.mkdir(parents=True, mode=0o700)
    try:
        old: Optional[bytes] = target.read_bytes()
    except FileNotFoundError:
        old = None
    backup = None
    if old is not None:
        backup = backup_path(target, timestamp())
        before_change(backup)
        shutil.copy2(target, backup)  # content and mode
    sep = b"" if not old or old.endswith(b"\n") else b"\n"
    atomic_write(path, (old or b"") + sep + known_hosts_line(state).encode(), mode=0o600)
    return path, backup


# --- a new key pair --------------------------------------------------------------------------


def new_key_path(alias: str) -> Path:
    base = Path.home() / ".ssh" / f"id_ed25519_{alias}"
    candidate, n = base, 1
    while candidate.exists() or Path(str(candidate) + ".pub").exists():
        n += 1
        candidate = base.with_name(f"{base.name}_{n}")
    return candidate


def create_key(path: Path, comment: str, passphrase: bool, before_change: Callable[[Path], None],
               timeout: float = 120) -> None:
    """``ssh-keygen -t ed25519``. With ``passphrase``, ssh-keygen asks for it on the
    terminal itself (mkdoctor never sees it); else ``-N ''``."""
    before_change(path)
    before_change(Path(str(path) + ".pub"))
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-C", comment, "-f", str(path)]
    if not passphrase:
        argv[2:2] = ["-N", ""]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    else:
        done = subprocess.run(argv, timeout=timeout)  # the terminal: ssh-keygen's own prompt
    if done.returncode != 0:
        err = getattr(done, "stderr", "") or ""
        raise RuntimeError(f"ssh-keygen failed ({done.returncode}) {err.strip()}")


def add_to_agent(path: Path, timeout: float = 120) -> bool:
    """``ssh-add KEY`` on the terminal (ssh-add asks for the passphrase itself)."""
    try:
        return subprocess.run(["ssh-add", str(path)], timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --- installing the public key ---------------------------------------------------------------

# $1: the public key line; $2: the authorized_keys file, absolute: the first file of sshd's
# AuthorizedKeysFile for this user, as sshd -T reports it or mkdoctor.openssh.sshd_config
# evaluates it (authorized_keys_target), never parsed here.
INSTALL_SCRIPT = r"""
set -e
umask 077
key=$1
akf=$2
blob=$(printf '%s\n' "$key" | awk '{print $2}')
dir=$(dirname "$akf")
if [ ! -d "$dir" ]; then
  mkdir -p "$dir" && chmod 700 "$dir"
fi
if [ ! -e "$akf" ]; then
  : > "$akf" && chmod 600 "$akf"
fi
if grep -qF -- "$blob" "$akf" 2>/dev/null; then
  echo "MKD-KEY present $akf"
  exit 0
fi
if [ -s "$akf" ] && [ -n "$(tail -c 1 "$akf")" ]; then printf '\n' >> "$akf"; fi
printf '%s\n' "$key" >> "$akf"
echo "MKD-KEY added $akf"
"""

HOME_SCRIPT = 'printf "%s\\n" "$HOME"'


def install_command(public_line: str, authorized_keys: str) -> str:
    """The remote command (for the login shell, whichever it is): the script above run
    by sh, appending ``public_line`` to ``authorized_keys`` unless it is there."""
    from mkdoctor.openssh.session import login_shell_command

    return login_shell_command(shlex.join(["sh", "-c", INSTALL_SCRIPT, "sh",
                                           public_line.strip(), authorized_keys]))


def authorized_keys_target(cfg, home: str, user: str, uid: str,
                           sshd_config: str) -> tuple[str, str]:
    """Where sshd looks for this user's keys: the first AuthorizedKeysFile entry of the
    effective configuration ``cfg`` (an :class:`~mkdoctor.openssh.sshd_config.EffectiveConfig`
    for our connection: ``Match`` blocks, ``=`` syntax, quotes and Includes as sshd reads
    them), expanded as sshd does (``%%``, ``%h``, ``%u``, ``%U``; relative to the home).
    Returns (the file, a ``MKD-SRC KIND WHAT`` line for :func:`source_note` when the
    answer is sshd's default because the configuration could not be read, else "")
    (pure)."""
    from mkdoctor.checks.mk305_authorized_keys import expand
    from mkdoctor.openssh.sshd_config import argv_split

    default = expand(".ssh/authorized_keys", home, user, uid)
    if cfg is None:
        return default, f"MKD-SRC missing {sshd_config}"
    if cfg.error:
        kind = "unreadable" if "Permission denied" in cfg.error else "missing"
        return default, f"MKD-SRC {kind} {sshd_config}"
    unread = ""
    for problem in cfg.problems:
        m = re.search(r"cannot read (\S+): Permission denied", problem)
        if m:
            unread = f"MKD-SRC unreadable-include {m.group(1)}"
            break
    try:
        entries = argv_split(cfg.get("authorizedkeysfile") or "")
    except ValueError:
        entries = []
    entries = [e for e in entries if e and e.lower() != "none"]
    if not entries:
        return default, unread
    return expand(entries[0], home, user, uid), unread


def install_through(client, ctx, public_line: str, sshd_config: str,
                    timeout: float) -> tuple[bool, str, str]:
    """Install the key through ``client``'s open session (the one login of the install):
    sshd's AuthorizedKeysFile for us (:func:`mkdoctor.sshd_remote.effective_sshd_config`:
    ``sshd -T`` when it may run, else the configuration files read over the same session
    and evaluated here), then the append. Returns (ok, message, note)."""
    from mkdoctor import sshd_remote
    from mkdoctor.openssh.session import RemoteUnavailable

    facts = sshd_remote.remote_facts(ctx)
    home = client.run(HOME_SCRIPT, timeout).stdout.strip()
    if not home.startswith("/"):
        return False, "cannot read the remote home directory ($HOME)", ""
    try:
        cfg = sshd_remote.effective_sshd_config(ctx)
    except RemoteUnavailable:
        cfg = None
    path, src = authorized_keys_target(cfg, home, facts.user, str(facts.uid or ""), sshd_config)
    done = client.run(["sh", "-c", INSTALL_SCRIPT, "sh", public_line.strip(), path], timeout)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("MKD-KEY ")), "")
    if done.exit_code == 0 and line:
        _, state, where = line.split(" ", 2)
        note = source_note(src, sshd_config, where)
        return (True, f"public key {'already in' if state == 'present' else 'added to'} {where}",
                note)
    reason = ((done.stderr.strip() or done.stdout.strip()).splitlines()
              or [f"the install script exited with {done.exit_code}"])[-1]
    return False, reason, source_note(src, sshd_config)


def source_note(out: str, sshd_config: str, used: str = "sshd's default file") -> str:
    """One line saying why the file the key went to may not be the one sshd reads (from
    the ``MKD-SRC`` lines of :func:`authorized_keys_target`), or "" (pure)."""
    for line in out.splitlines():
        if not line.startswith("MKD-SRC "):
            continue
        kind, _, what = line[len("MKD-SRC "):].partition(" ")
        if kind == "unreadable":
            return (f"{what} cannot be read by this user on the server (mode 0600, as on "
                    f"RHEL/Fedora), so its AuthorizedKeysFile is unknown: the key went to "
                    f"{used}, sshd's default; give --sshd-config PATH of a readable copy if sshd "
                    "looks elsewhere")
        if kind == "missing":
            return (f"{what} does not exist on the server, so its AuthorizedKeysFile is unknown: "
                    f"the key went to {used}, sshd's default; give --sshd-config PATH (sshd -T "
                    "names the file it reads)")
        if kind == "unreadable-include":
            return (f"{what} (an Include of {sshd_config}) cannot be read by this user on the "
                    f"server: an AuthorizedKeysFile set there is unknown; the key went to {used}")
    return ""
