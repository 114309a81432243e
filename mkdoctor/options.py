"""The run's options and the validation of user input.

Everything a user types (host names, ports, paths) is hostile input: it is validated
here, and anything invalid raises :class:`UsageError`, which the command turns into one
line on stderr and exit status 2.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DEFAULT_TIMEOUT = 5.0
DEFAULT_DEADLINE = 60.0
DEFAULT_KERNEL_TIMEOUT = 30.0
MODES = ("direct", "tunnel")


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


@dataclass(frozen=True)
class Target:
    """The remote host as given: ``[USER@]HOST[:PORT]`` or a Host alias of the ssh config.

    ``destination`` is what we pass to ssh; user and port are passed with ``-l``/``-p``
    only when given explicitly, so the ssh config supplies the rest.
    """

    host: str
    user: Optional[str] = None
    port: Optional[int] = None

    @property
    def display(self) -> str:
        text = f"{self.user}@{self.host}" if self.user else self.host
        if self.port:
            text += f":{self.port}"
        return text


_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._@-]*$")


def parse_host(text: str, flag: str = "--host") -> Target:
    """Parse ``[USER@]HOST[:PORT]`` (``[v6addr]:port`` for IPv6 with a port).

    Rejects what could be read as an option by ssh or break a command line: empty,
    whitespace or control characters, a leading ``-``. ``flag`` names the input in the
    message (a profile's file and key).
    """
    if text is None or text == "":
        raise UsageError(f"{flag}: empty host")
    if _CONTROL.search(text):
        raise UsageError(f"{flag} {text!r}: contains whitespace or control characters")
    if text.startswith("-"):
        raise UsageError(f"{flag} {text!r}: must not start with '-'")
    user: Optional[str] = None
    rest = text
    if "@" in text:
        user, _, rest = text.rpartition("@")
        if not user or not _USER.match(user) or user.startswith("-"):
            raise UsageError(f"{flag} {text!r}: invalid user name {user!r}")
    port: Optional[int] = None
    host = rest
    if rest.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", rest)
        if not m:
            raise UsageError(f"{flag} {text!r}: malformed [address]:port")
        host = m.group(1)
        if m.group(2):
            port = _port(m.group(2), text, flag)
    elif rest.count(":") == 1:
        host, _, p = rest.partition(":")
        port = _port(p, text, flag)
    elif rest.count(":") > 1:
        try:  # a bare IPv6 address without a port
            ipaddress.IPv6Address(rest)
        except ValueError:
            raise UsageError(f"{flag} {text!r}: write an IPv6 address with a port as [addr]:port") from None
    if not host or host.startswith("-"):
        raise UsageError(f"{flag} {text!r}: missing host name")
    if not re.fullmatch(r"[A-Za-z0-9._:%\-]+", host):
        raise UsageError(f"{flag} {text!r}: invalid characters in host name {host!r}")
    return Target(host=host, user=user, port=port)


def _port(text: str, whole: str, flag: str = "--host") -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"{flag} {whole!r}: port must be a number from 1 to 65535")
    return int(text)


def parse_link_ports(text: str, flag: str = "--link-ports") -> tuple[int, int]:
    """Two distinct ports 1024-65535, ``P1,P2``."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"{flag} {text!r}: give two ports as P1,P2 (e.g. 31415,31416)")
    p1, p2 = int(parts[0]), int(parts[1])
    for p in (p1, p2):
        if not 1024 <= p <= 65535:
            raise UsageError(f"{flag} {text!r}: port {p} is outside 1024-65535")
    if p1 == p2:
        raise UsageError(f"{flag} {text!r}: the two ports must differ")
    return p1, p2


def parse_link_host(text: str, flag: str = "--link-host") -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: not an IP address") from None


def parse_timeout(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: not a number of seconds") from None
    if not 0 < value <= 3600:
        raise UsageError(f"{flag} {text!r}: must be more than 0 and at most 3600 seconds")
    return value


def parse_ids(text: str, flag: str, known: list[str]) -> list[str]:
    ids = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not ids:
        raise UsageError(f"{flag}: no check ID given; valid IDs: {', '.join(known)}")
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UsageError(f"{flag}: unknown check ID {', '.join(unknown)}; valid IDs: {', '.join(known)}")
    return ids


def no_backquote(text: str, flag: str) -> str:
    """The front end rewrites backquoted text (`` `linkname` ``, `` `ipaddress` ``) in the
    launch command, so a path that goes into it must not hold a backquote."""
    if "`" in text:
        raise UsageError(f"{flag} {text!r}: contains a backquote (`), which the front end "
                         "would rewrite in the launch command")
    return text


def check_kernel(text: str, flag: str = "--kernel") -> str:
    """The remote kernel path: not empty, no line break or NUL, no backquote."""
    if not text or any(c in text for c in "\x00\n\r"):
        raise UsageError(f"{flag}: empty path, or a path with control characters")
    return no_backquote(text, flag)


def nonempty(text: str, flag: str) -> str:
    if not text:
        raise UsageError(f"{flag}: empty value")
    return text


def local_path(text: str, flag: str) -> Path:
    """``text`` as a local path, ``~`` expanded; empty or unusable text is a usage error."""
    if not text:
        raise UsageError(f"{flag}: empty path")
    if "\x00" in text:
        raise UsageError(f"{flag} {text!r}: contains a NUL character")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~nosuchuser
        raise UsageError(f"{flag} {text}: {exc}") from None


def existing_file(text: str, flag: str) -> Path:
    """A path that exists and is not a directory (``/dev/null`` is fine: ``ssh -F
    /dev/null`` is how to ignore the user's ssh config)."""
    path = local_path(text, flag)
    if path.is_dir():
        raise UsageError(f"{flag} {text}: is a directory")
    if not path.exists():
        raise UsageError(f"{flag} {text}: no such file")
    return path


def ssh_config_file(text: str, flag: str = "--ssh-config") -> Path:
    """An ssh client config for ``ssh -F``: it goes into the launch command too."""
    no_backquote(text, flag)
    return existing_file(text, flag)


def output_path(text: str, flag: str = "--output") -> Path:
    """Where the report goes, checked before the run: an existing special file (a fifo,
    ``/dev/stdout``) must be writable, else the directory must exist and be writable."""
    import os

    path = local_path(text, flag)
    if path.is_dir():
        raise UsageError(f"{flag} {text}: is a directory")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {text}: not writable")
        if not path.is_file():
            return path  # written through, never replaced
    real = path.resolve() if path.is_symlink() else path
    parent = real.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise UsageError(f"{flag} {text}: the directory {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {text}: cannot write in the directory {parent}")
    return path


@dataclass
class Options:
    """Everything that shapes a run. Built from flags over a saved profile."""

    target: Optional[Target] = None
    ssh_config: Optional[Path] = None
    identity: Optional[Path] = None
    kernel: Optional[str] = None
    mode: Optional[str] = None  # None: what MK103 recommends
    link_ports: tuple[int, int] = (31415, 31416)
    link_ports_given: bool = False
    link_host: Optional[str] = None
    sshd_config: str = "/etc/ssh/sshd_config"
    ip_services: list[str] = field(default_factory=list)
    offline: bool = False
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    kernel_timeout: float = DEFAULT_KERNEL_TIMEOUT
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    strict: bool = False
    verbose: bool = False
    profile: Optional[object] = None  # mkdoctor.profile.Profile when one was loaded
    # Cluster profiles (--scheduler slurm): the allocation the launch command asks for.
    scheduler: Optional[str] = None
    partition: str = ""
    time_limit: str = ""
    cpus: int = 0
    subkernels: int = 0  # extra task slots in the kernel's job (the parallel-kernels file)
    account: str = ""
    licenses: str = ""
    cluster_link: str = ""  # "forward" (ssh -R, default) or "stdio" (no forwarding)


# --------------------------------------------------------------------------- clusters

SCHEDULERS = ("slurm",)
_SLURM_TIME = re.compile(r"^(?:\d{1,4}-)?\d{1,5}(?::\d{1,2}){0,2}$")


def slurm_word(text: str, flag: str) -> str:
    """A partition, account or licence spec: it goes to srun as one argument (no shell on
    the way), so only what the front end or the two shells would mangle is refused."""
    if not text or _CONTROL.search(text) or "`" in text:
        raise UsageError(f"{flag} {text!r}: empty, or contains whitespace, control characters "
                         "or a backquote")
    if text.startswith("-"):
        raise UsageError(f"{flag} {text!r}: must not start with '-'")
    return text


def slurm_time(text: str, flag: str = "--time") -> str:
    """A Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    if not _SLURM_TIME.match(text or ""):
        raise UsageError(f"{flag} {text!r}: give a Slurm time limit such as 01:00:00 or 1-00:00:00")
    return text


def slurm_cpus(text, flag: str = "--cpus", lowest: int = 1) -> int:
    if isinstance(text, bool) or not str(text).isdigit() or not lowest <= int(text) <= 4096:
        raise UsageError(f"{flag} {text!r}: must be a number from {lowest} to 4096")
    return int(text)
