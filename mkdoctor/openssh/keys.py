"""Inspecting an SSH identity (a private key and its ``.pub``) without ever reading it.

Used by MK202 key-pair and by the setup wizard (to decide whether an existing key can be
reused). The private key file's content is never read into this process: everything
about it comes from OpenSSH's own tools —

- ``ssh-keygen -y -P '' -f KEY`` prints the PUBLIC half of an unencrypted key, and fails
  with "incorrect passphrase" for an encrypted one (that is how encryption is detected);
- ``ssh-keygen -l -f LINK`` on a symbolic link to the key, in a directory without a
  ``.pub``, prints the fingerprint stored in the clear in an OpenSSH-format private key
  even when it is encrypted (``ssh-keygen -l -f KEY`` itself would read ``KEY.pub``
  instead, so a mismatched ``.pub`` could not be caught that way);
- ``ssh-add -L`` lists the public keys the agent holds.

Public keys are parsed by :mod:`mkdoctor.openssh.pubkey` (type, bits, SHA256 fingerprint).

API: :func:`identity_candidates` / :func:`default_identity_files` (what ssh would use),
:func:`inspect_identity` -> :class:`KeyInfo`, :func:`assess` -> list of
:class:`Finding`, :func:`acceptable`, :func:`keygen_command`.
"""

from __future__ import annotations

import getpass
import os
import platform
import re
import shlex
import socket
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from mkdoctor.openssh.pubkey import KIND_BY_ALGORITHM, PublicKey, parse_public_key  # noqa: F401
from mkdoctor.proc import Completed, ProcessRunner

if TYPE_CHECKING:  # pragma: no cover
    from mkdoctor.context import Context

#: Runs one local program and returns its outcome (``ctx.run_local`` in a check).
Run = Callable[[Sequence[str]], Completed]

# Key sizes. RSA: OpenSSH refuses RSA keys below 1024 bits (RequiredRSASize, default
# 1024, OpenSSH 9.1 release notes / ssh_config(5)); ssh-keygen's default became 3072 bits
# in OpenSSH 8.0 (release notes, following NIST SP 800-57), and hardened servers (e.g.
# RHEL crypto policies, RequiredRSASize 2048 or 3072) refuse smaller keys. We fail below
# 2048 and warn below 3072.
RSA_FAIL_BELOW = 2048
RSA_WARN_BELOW = 3072

DEFAULT_KEY = "~/.ssh/id_ed25519"

# --- public keys -----------------------------------------------------------------------


_FP_LINE = re.compile(r"^(\d+)\s+(SHA256:\S+)\s")


def parse_fingerprint_line(text: str) -> Optional[tuple[int, str]]:
    """``256 SHA256:abc... comment (ED25519)`` -> (256, "SHA256:abc...")."""
    for line in text.splitlines():
        m = _FP_LINE.match(line.strip())
        if m:
            return int(m.group(1)), m.group(2)
    return None


# --- the agent -------------------------------------------------------------------------


@dataclass
class AgentKeys:
    available: bool
    keys: list[PublicKey] = field(default_factory=list)
    error: str = ""
    timed_out: bool = False  # the agent accepted the connection but never answered

    @property
    def fingerprints(self) -> set[str]:
        return {k.fingerprint for k in self.keys}


def agent_keys(run: Run) -> AgentKeys:
    """The public keys the ssh-agent (``$SSH_AUTH_SOCK``) holds, from ``ssh-add -L``.

    ssh-add(1): exit status 1 when the agent has no identities, 2 when it cannot be
    contacted.
    """
    done = run(["ssh-add", "-L"])
    if done.returncode == 0:
        keys = []
        for line in done.stdout.splitlines():
            try:
                keys.append(parse_public_key(line))
            except ValueError:
                continue
        return AgentKeys(True, keys)
    if done.timed_out:
        where = os.environ.get("SSH_AUTH_SOCK") or "SSH_AUTH_SOCK"
        return AgentKeys(False, [], f"the agent at {where} did not answer (ssh-add -L timed out)",
                         timed_out=True)
    text = (done.stderr or done.stdout).strip()
    if done.returncode == 1 and "no identities" in text.lower():
        return AgentKeys(True, [])
    return AgentKeys(False, [], text or f"ssh-add -L exited with {done.returncode}")


# --- which identity ssh uses ----------------------------------------------------------


def expand_identity_path(value: str, user: str = "", host: str = "", remote_user: str = "") -> Path:
    """Expand ``~`` and the ssh_config tokens ``%d %u %h %r %l %%`` of an IdentityFile.

    ``~`` and ``%d`` are taken from ``$HOME`` (ssh itself uses the passwd entry's home;
    the two are the same for a logged-in user, and tests rely on a private ``$HOME``).
    """
    home = os.path.expanduser("~")
    user = user or getpass.getuser()
    tokens = {"d": home, "u": user, "h": host, "r": remote_user or user,
              "l": socket.gethostname().split(".")[0], "%": "%"}
    value = re.sub(r"%(.)", lambda m: tokens.get(m.group(1), m.group(0)), value)
    return Path(os.path.expanduser(value))


def default_identity_files(run: Run, ssh_config: Optional[Path] = None,
                           destination: str = "localhost") -> list[Path]:
    """The IdentityFile list ``ssh -G`` gives for ``destination`` (default: a dummy
    host, which yields the defaults of the config file or of ssh itself)."""
    from mkdoctor.openssh.client_config import read_ssh_g

    return _identity_paths(read_ssh_g(run, destination, ssh_config))


def _identity_paths(config: dict[str, list[str]]) -> list[Path]:
    host = (config.get("hostname") or [""])[0]
    ruser = (config.get("user") or [""])[0]
    out: list[Path] = []
    for value in config.get("identityfile", []):
        path = expand_identity_path(value, host=host, remote_user=ruser)
        if path not in out:
            out.append(path)
    return out


def identity_candidates(ctx: "Context") -> tuple[list[Path], str]:
    """The identity files ssh will try for the run's target, in order, and where the
    list came from: ``--identity``, else ``ssh -G`` of the target, else ``ssh -G`` of a
    dummy host (the defaults) with the run's ``--ssh-config``."""
    if ctx.options.identity:
        return [Path(ctx.options.identity).expanduser()], "--identity"
    if ctx.ssh is not None:
        config = ctx.ssh.config(ctx.step_timeout())
        return _identity_paths(config), f"ssh -G {ctx.target.display}"
    return default_identity_files(ctx.run_local, ctx.options.ssh_config), "ssh -G (defaults)"


# --- one identity ----------------------------------------------------------------------


@dataclass
class KeyInfo:
    """What we know about one identity. None means "could not tell"."""

    path: Path
    exists: bool = False
    mode: Optional[int] = None
    owner_uid: Optional[int] = None
    my_uid: Optional[int] = None
    pub_path: Path = Path()
    pub_present: bool = False
    pub: Optional[PublicKey] = None  # from KEY.pub
    pub_error: str = ""  # KEY.pub present but not a valid public key
    derived: Optional[PublicKey] = None  # from the private key (ssh-keygen -y)
    private_fingerprint: str = ""  # of the private key itself, "" when unknown
    private_bits: int = 0
    encrypted: Optional[bool] = None
    load_error: str = ""  # ssh-keygen could not read the private key (not a key, unreadable)
    bad_permissions: bool = False  # ssh-keygen refused it ("UNPROTECTED PRIVATE KEY FILE")
    agent: Optional[AgentKeys] = None

    @property
    def public(self) -> Optional[PublicKey]:
        """The best public half: derived from the private key, else the ``.pub``."""
        return self.derived or self.pub

    @property
    def matches(self) -> Optional[bool]:
        """The ``.pub`` belongs to the private key (None when it cannot be told)."""
        if self.pub is None or not self.private_fingerprint:
            return None
        return self.pub.fingerprint == self.private_fingerprint

    @property
    def fingerprint(self) -> str:
        return self.private_fingerprint or (self.pub.fingerprint if self.pub else "")

    @property
    def in_agent(self) -> Optional[bool]:
        if self.agent is None or not self.agent.available or not self.fingerprint:
            return None
        return self.fingerprint in self.agent.fingerprints

    @property
    def kind(self) -> str:
        return self.public.kind if self.public else ""

    @property
    def bits(self) -> int:
        return self.public.bits if self.public else self.private_bits

    def facts(self) -> dict[str, Any]:
        """The facts MK202 publishes (never private material)."""
        pub = self.public
        return {
            "identity": str(self.path),
            "public_key": pub.line if pub else None,
            "fingerprint": self.fingerprint or None,
            "type": self.kind or None,
            "bits": self.bits or None,
            "encrypted": self.encrypted,
            "in_agent": self.in_agent,
        }


def inspect_identity(path: Path, run: Run, check_agent: bool = True) -> KeyInfo:
    """Everything about the identity at ``path``, with ``run`` executing ssh-keygen and
    ssh-add. Never reads the private key file's content."""
    path = Path(path).expanduser()
    info = KeyInfo(path=path, pub_path=Path(str(path) + ".pub"))
    try:
        st = path.stat()
    except OSError:
        return info
    info.exists = True
    if os.name != "nt":
        info.mode = stat.S_IMODE(st.st_mode)
        info.owner_uid = st.st_uid
        info.my_uid = os.geteuid()

    if info.pub_path.is_file():
        info.pub_present = True
        try:
            info.pub = parse_public_key(info.pub_path.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError) as exc:
            info.pub_error = str(exc)

    done = run(["ssh-keygen", "-y", "-P", "", "-f", str(path)])
    text = (done.stderr + done.stdout).strip()
    if done.returncode == 0:
        info.encrypted = False
        try:
            info.derived = parse_public_key(done.stdout)
            info.private_fingerprint = info.derived.fingerprint
        except ValueError:
            info.load_error = "ssh-keygen -y printed no valid public key"
    elif re.search(r"incorrect passphrase|passphrase is required", text, re.I):
        info.encrypted = True
    elif re.search(r"bad permissions|UNPROTECTED PRIVATE KEY", text, re.I):
        info.bad_permissions = True
    elif done.timed_out:
        info.load_error = "ssh-keygen timed out"
    else:
        last = [ln for ln in text.splitlines() if ln.strip()]
        info.load_error = last[-1] if last else f"ssh-keygen exited with {done.returncode}"

    if not info.private_fingerprint and not info.load_error:
        fp = _private_fingerprint(path, run)
        if fp:
            info.private_bits, info.private_fingerprint = fp

    if check_agent:
        info.agent = agent_keys(run)
    return info


def _private_fingerprint(path: Path, run: Run) -> Optional[tuple[int, str]]:
    """The fingerprint recorded in the private key file itself (clear text in the
    OpenSSH format, even when encrypted), through a symbolic link in a directory with
    no ``.pub`` so that ssh-keygen cannot read ``KEY.pub`` instead. Never copies the key."""
    try:
        with tempfile.TemporaryDirectory(prefix="mkd-key-") as tmp:
            link = Path(tmp) / "key"
            os.symlink(path.resolve(), link)
            done = run(["ssh-keygen", "-l", "-f", str(link)])
    except OSError:  # no symlinks (Windows without the privilege)
        return None
    return parse_fingerprint_line(done.stdout) if done.returncode == 0 else None


# --- judging it ------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem: ``status`` is "fail" or "warn"."""

    status: str
    summary: str
    fix: str


def keygen_command(path: str = DEFAULT_KEY, comment: Optional[str] = None) -> str:
    """The command that makes a new ed25519 key pair at ``path``."""
    if comment is None:
        comment = f"{getpass.getuser()}@{socket.gethostname().split('.')[0]}"
    shown = path if path.startswith("~/") and shlex.quote(path[2:]) == path[2:] else shlex.quote(path)
    return f'ssh-keygen -t ed25519 -f {shown} -C "{comment}"'


def add_command(path: Path) -> str:
    """``ssh-add KEY`` (with the macOS keychain option on macOS, so it survives reboots)."""
    q = shlex.quote(str(path))
    if platform.system() == "Darwin":
        return f"ssh-add --apple-use-keychain {q}"
    return f"ssh-add {q}"


def assess(info: KeyInfo, destination: str = "HOST") -> list[Finding]:
    """The problems of an inspected identity, failures first."""
    q = shlex.quote(str(info.path))
    qpub = shlex.quote(str(info.pub_path))
    new_key = (f"make a new key: {keygen_command()} and install it: "
               f"ssh-copy-id -i {DEFAULT_KEY}.pub {destination}")
    out: list[Finding] = []
    if not info.exists:
        return [Finding("fail", f"the identity {info.path} does not exist",
                        keygen_command(str(info.path)))]
    if info.owner_uid is not None and info.my_uid is not None and info.owner_uid != info.my_uid:
        out.append(Finding(
            "fail", f"{info.path} is owned by uid {info.owner_uid}, not by you (uid {info.my_uid})",
            f"sudo chown {shlex.quote(getpass.getuser())} {q} && chmod 600 {q}"))
    if (info.mode is not None and info.mode & 0o077) or info.bad_permissions:
        # ssh refuses a private key that group or others can access (sshkey_perm_ok in
        # OpenSSH's authfile.c: "UNPROTECTED PRIVATE KEY FILE! ... will be ignored").
        mode = f"{info.mode:04o}" if info.mode is not None else "too open"
        out.append(Finding(
            "fail", f"{info.path} has mode {mode}: ssh ignores it (UNPROTECTED PRIVATE KEY FILE)",
            f"chmod 600 {q}"))
    if info.load_error:
        out.append(Finding(
            "fail", f"ssh-keygen cannot read {info.path}: {info.load_error}",
            f"check that {info.path} is a private key (ssh-keygen -l -f {q}), or {new_key}"))
    if info.pub_error:
        out.append(Finding(
            "fail", f"{info.pub_path} is not a valid public key ({info.pub_error})",
            f"ssh-keygen -y -f {q} > {qpub}"))
    elif info.matches is False:
        out.append(Finding(
            "fail", f"{info.pub_path} does not belong to {info.path} (another key's public half)",
            f"ssh-keygen -y -f {q} > {qpub}  (then install the right key: "
            f"ssh-copy-id -i {qpub} {destination})"))
    if info.encrypted:
        if info.agent is not None and info.agent.timed_out:
            out.append(Finding(
                "fail", f"{info.path} is passphrase-protected and the ssh-agent does not "
                        f"answer ({info.agent.error}): the front end cannot type a passphrase",
                f'restart the agent (or log out and in): eval "$(ssh-agent -s)" && '
                f"{add_command(info.path)}"))
        elif info.agent is not None and not info.agent.available:
            out.append(Finding(
                "fail", f"{info.path} is passphrase-protected and no ssh-agent is reachable: "
                        "the front end cannot type a passphrase",
                f'eval "$(ssh-agent -s)" && {add_command(info.path)}  (or use a desktop '
                "session whose agent sets SSH_AUTH_SOCK)"))
        elif info.in_agent is False:
            out.append(Finding(
                "fail", f"{info.path} is passphrase-protected and not loaded in the agent: "
                        "the front end cannot type a passphrase",
                add_command(info.path)))
        elif info.in_agent is None and info.agent is not None:
            out.append(Finding(
                "warn", f"{info.path} is passphrase-protected and its public half is unknown, "
                        "so whether the agent holds it cannot be told",
                f"ssh-keygen -y -f {q} > {qpub}"))
    if info.exists and not info.pub_present and not info.load_error:
        out.append(Finding(
            "warn", f"the public half {info.pub_path} is missing (needed to install the key "
                    "on the remote host)",
            f"ssh-keygen -y -f {q} > {qpub}"))
    kind, bits = info.kind, info.bits
    if kind == "dsa":
        # DSA: disabled by default at run time since OpenSSH 7.0 (2015), disabled at
        # compile time in 9.8 and removed in OpenSSH 10.0 (2025-04-09) -- release notes
        # of OpenSSH 7.0, 9.8 and 10.0 (openssh.com/txt/release-10.0).
        out.append(Finding(
            "fail", "DSA keys are refused by OpenSSH since 7.0 and no longer supported since 10.0",
            new_key))
    elif kind == "rsa" and bits and bits < RSA_FAIL_BELOW:
        out.append(Finding(
            "fail", f"RSA key of {bits} bits is too small (refused by hardened servers; "
                    f"at least {RSA_FAIL_BELOW}, better ed25519)", new_key))
    elif kind == "rsa" and bits and bits < RSA_WARN_BELOW:
        out.append(Finding(
            "warn", f"RSA key of {bits} bits: ssh-keygen's default is {RSA_WARN_BELOW} since "
                    "OpenSSH 8.0; ed25519 is recommended", new_key))
    elif kind.endswith("-sk"):
        out.append(Finding(
            "warn", f"{kind} is a hardware security key: it must be present (and usually "
                    "touched) at every login the front end makes", new_key))
    elif kind and kind not in ("ed25519", "ecdsa", "rsa"):
        out.append(Finding("warn", f"unusual key type {kind}", new_key))
    out.sort(key=lambda f: 0 if f.status == "fail" else 1)
    return out


def acceptable(info: KeyInfo) -> bool:
    """True when the identity can be used as it is (no failure; warnings allowed)."""
    return info.exists and not any(f.status == "fail" for f in assess(info))


def local_runner(timeout: float = 10.0) -> Run:
    """A :data:`Run` for callers without a check context (the setup wizard)."""
    runner = ProcessRunner()
    return lambda argv: runner.run(argv, timeout)
