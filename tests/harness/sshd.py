"""A real OpenSSH ``sshd`` on loopback for tests: :class:`SSHSandbox`.

As root (CI), every sandbox gets its own unprivileged remote user that exists only for
that sshd: sshd runs in a private mount namespace where copies of ``/etc/passwd``,
``/etc/group`` and ``/etc/shadow`` (with the extra user appended) are bind-mounted over
the real ones. The real ``/etc`` is never modified. The user's home directory lives in
the sandbox directory, so tests can break it (permissions, missing ``~/.ssh``, ...).
sshd is also the init of a private pid namespace: it reaps orphans (this machine's pid 1
does not) and stopping it kills every process of the sandbox, even daemonized ones.
Pids printed by remote commands (``echo $!``) are therefore namespace-local.

Without root, sshd runs as the current user (who is then the remote user); the home
directory cannot be replaced, ``AuthorizedKeysFile`` points into the sandbox directory,
``StrictModes`` is off (the sandbox lives under world-writable ``/tmp``) and
:attr:`SSHSandbox.per_test_home` is False so tests that need a breakable home can skip.

The client side never touches the real ``~/.ssh``: ``client_dir`` holds a key pair,
a ``known_hosts`` with the host key and an ``ssh_config`` with a ``Host sandbox`` block.

Everything is started by absolute path, on a free port, with a complete generated
``sshd_config`` (the real ``/etc/ssh/sshd_config`` is never read), and stopped by pid.

``sudo=True`` (root only) lets the sandbox user run ``sudo`` (NOPASSWD, or asking for the
user's password with ``sudo_password=True``) for code that administers sshd (the setup
wizard's hardening step). BEWARE: ``sudo`` there is REAL root on this machine. Only the
mount namespace's view confines it, so these paths are private to the sandbox:

* ``/etc/ssh`` is a per-sandbox directory (:attr:`SSHSandbox.etc_ssh_dir`): the sandbox's
  own ``sshd_config`` (``Include /etc/ssh/sshd_config.d/*.conf`` first), its
  ``sshd_config.d``, copies of ``moduli`` and the client ``ssh_config``; never the host keys.
  sshd runs with ``-f /etc/ssh/sshd_config``, so the default paths of any tool are the
  sandbox's, and ``sshd -t``/``sshd -T`` as root there validate the running config.
* ``/etc/sudoers`` is a generated file (root, 0440) granting only the sandbox user
  (no ``@includedir``, no syslog, no mail, no lecture files).
* ``/run`` is a private tmpfs: ``/run/sshd`` (privilege separation) and
  ``/run/sshd.pid`` (``PidFile``) are the sandbox's, so ``kill -HUP $(cat
  /run/sshd.pid)`` reloads the sandbox sshd (pid 1 of its pid namespace), and
  ``systemctl``/``service`` cannot reach this machine's init through ``/run/systemd``
  or ``/run/dbus``: they fail instead of reloading the real sshd.

Everything else (``/tmp``, ``/var``, the rest of ``/etc``) is the real filesystem: a test
must make root touch only ``/etc/ssh`` and ``/run`` there.
"""

from __future__ import annotations

import datetime
import functools
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Sequence

from .procs import descendants, is_alive, pids_with_env, start_time, terminate, terminate_tree

SSHD = "/usr/sbin/sshd"
"""The sshd binary. Always run by absolute path (sshd re-execs itself by argv[0])."""

SSH = shutil.which("ssh") or "/usr/bin/ssh"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
IP = shutil.which("ip") or "/usr/sbin/ip"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"

LISTENING = "Server listening on"
ACCEPTED_PUBLICKEY = "Accepted publickey"
START_TIMEOUT = 10.0
UID_RANGE = (20000, 60000)

# Runs inside the private mount namespace: overlay the user database, then become sshd
# (exec keeps the pid, so the pid we hold is sshd's own).
_MOUNT_AND_EXEC = (
    'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && '
    'mount --bind "$3" /etc/shadow && exec "$4" -D -e -f "$5"'
)

# The same overlay, then run "$@" (sshd -t / -T against the sandbox's view of /etc).
_MOUNT_AND_RUN = (
    'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && '
    'mount --bind "$3" /etc/shadow && shift 3 && exec "$@"'
)


def _die_with_parent() -> None:
    """In the child before exec: end with the test process. If pytest is killed before
    its fixtures tear down, the kernel sends SIGKILL to ``unshare`` (Linux
    PR_SET_PDEATHSIG, kept across exec; SIGKILL because ``unshare --fork`` ignores
    SIGTERM in its parent), and ``unshare --kill-child`` takes sshd and everything in its
    pid namespace with it: no sandbox outlives its test run."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class SSHSandboxError(RuntimeError):
    """sshd could not be configured, started or reloaded (message includes its output)."""


@functools.lru_cache(maxsize=None)
def openssh_version() -> tuple[int, int]:
    """(major, minor) of the installed sshd, parsed from ``sshd -V`` (printed on stderr)."""
    done = subprocess.run([SSHD, "-V"], capture_output=True, text=True, timeout=10)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stderr + done.stdout)
    if not match:
        raise SSHSandboxError(f"cannot parse OpenSSH version from: {done.stderr!r}")
    return int(match.group(1)), int(match.group(2))


def _host_for(address: str, port: int) -> str:
    """``addr:port`` as sshd's ListenAddress wants it (IPv6 in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _free_port(address: str, netns: str | None) -> int:
    """A port that was free on ``address`` a moment ago (bind to port 0, in the netns)."""
    family = "socket.AF_INET6" if ":" in address else "socket.AF_INET"
    code = (
        f"import socket; s = socket.socket({family}); s.bind(({address!r}, 0)); "
        "print(s.getsockname()[1])"
    )
    if netns is None:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
            sock.bind((address, 0))
            return int(sock.getsockname()[1])
    done = subprocess.run(
        [IP, "netns", "exec", netns, sys.executable, "-c", code],
        capture_output=True, text=True, timeout=15, check=True,
    )
    return int(done.stdout.strip())


def _crypt_sha512(password: str) -> str:
    """SHA-512 crypt hash (``$6$...``) of ``password`` via ``openssl passwd -6``."""
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
        capture_output=True, text=True, timeout=10, check=True,
    )
    return done.stdout.strip()


class SSHSandbox:
    """A real sshd on ``address`` and a free port, with its own user, keys and client config.

    Use as a context manager or call :meth:`start` / :meth:`stop` (stop is idempotent and
    always kills by pid: sshd, its per-connection children and, as root, every process in
    its private mount namespace).
    """

    alias = "sandbox"
    """Host alias of the sandbox in :attr:`client_config`."""

    def __init__(
        self,
        base_dir: Path,
        netns: str | None = None,
        address: str = "127.0.0.1",
        user: str | None = None,
        password: str | None = None,
        extra_config: str = "",
        authorize_client_key: bool = True,
        bind_mounts: dict[str, Path] | None = None,
        sudo: bool = False,
        sudo_password: bool = False,
        login_shell: str = "/bin/bash",
    ) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.netns = netns
        self.address = address
        self.password = password
        self.extra_config = extra_config
        self.authorize_client_key = authorize_client_key
        self.bind_mounts = {str(k): Path(v).absolute() for k, v in (bind_mounts or {}).items()}
        """Absolute path -> directory shown there, for this sshd and its sessions only
        (root only). A path that does not exist on this machine (``/usr/local/Wolfram``)
        is created in a read-only overlay of its parent, so the real filesystem is never
        touched; the parent must exist and must not be ``/``."""
        if self.bind_mounts and os.geteuid() != 0:
            raise SSHSandboxError("bind_mounts need root (a private mount namespace)")
        self.is_root = os.geteuid() == 0
        self.sudo = sudo or sudo_password
        """The sandbox user may use sudo (root only; see the module docstring)."""
        self.sudo_password = sudo_password
        if self.sudo:
            if not self.is_root:
                raise SSHSandboxError("sudo=True needs root (a private mount namespace)")
            if not shutil.which("sudo") or not os.path.exists("/etc/sudoers"):
                raise SSHSandboxError("sudo=True: sudo is not installed (apt-get install sudo)")
            if sudo_password and password is None:
                raise SSHSandboxError("sudo_password=True needs password= (sudo asks for it)")
        self.login_shell = login_shell
        """The sandbox user's login shell (root only), which sshd runs every command with."""
        if login_shell != "/bin/bash" and not self.is_root:
            raise SSHSandboxError("login_shell needs root (a private user)")
        self.per_test_home = self.is_root
        """True if :attr:`home` is a per-sandbox directory that tests may break."""

        if self.is_root:
            self.user = user or f"mkt{secrets.token_hex(3)}"
            self.uid = self.gid = 0  # chosen in _prepare_user_db
            self.home = self.base_dir / "home" / self.user
            self.authorized_keys_path = self.home / ".ssh" / "authorized_keys"
        else:
            me = pwd.getpwuid(os.getuid())
            if user not in (None, me.pw_name):
                raise SSHSandboxError(f"without root the sandbox user can only be {me.pw_name}")
            if password is not None:
                raise SSHSandboxError("password authentication needs root (sshd must read shadow)")
            if netns is not None:
                raise SSHSandboxError("a sandbox in a network namespace needs root")
            self.user, self.uid, self.gid = me.pw_name, me.pw_uid, me.pw_gid
            self.home = Path(me.pw_dir)
            self.authorized_keys_path = self.base_dir / "authorized_keys"

        self.etc_ssh_dir = self.base_dir / "etc-ssh"
        """With :attr:`sudo`: the directory shown at ``/etc/ssh`` in the namespace."""
        if self.sudo:
            self.sshd_config_path = self.etc_ssh_dir / "sshd_config"
            self.dropin_dir = self.etc_ssh_dir / "sshd_config.d"
        else:
            self.sshd_config_path = self.base_dir / "sshd_config"
            self.dropin_dir = self.base_dir / "sshd_config.d"
        self.sudoers_path = self.base_dir / "sudoers"
        self.host_key = self.base_dir / "ssh_host_ed25519_key"
        self.host_key_pub = self.base_dir / "ssh_host_ed25519_key.pub"
        self.log_path = self.base_dir / "sshd.log"
        self.etc_dir = self.base_dir / "etc"
        self.client_dir = self.base_dir / "client"
        self.client_key = self.client_dir / "id_ed25519"
        self.client_key_pub = self.client_dir / "id_ed25519.pub"
        self.known_hosts = self.client_dir / "known_hosts"
        self.client_config = self.client_dir / "ssh_config"

        self.port = 0
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._mntns: str | None = None
        self._prepared = False
        self.token = f"MKDOCTOR_SANDBOX={secrets.token_hex(8)}"
        """Set in every session's environment (sshd ``SetEnv``): finds escaped processes."""

    @property
    def sshd_config_in_namespace(self) -> str:
        """The sshd_config path as sshd sees it (``/etc/ssh/sshd_config`` with sudo)."""
        return "/etc/ssh/sshd_config" if self.sudo else str(self.sshd_config_path)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SSHSandbox":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f" netns={self.netns}" if self.netns else ""
        return f"<SSHSandbox {self.user}@{self.address}:{self.port}{where} pid={self.pid}>"

    @property
    def running(self) -> bool:
        """True while the sshd process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "SSHSandbox":
        """Prepare files (first time), then start sshd and wait until it listens.

        A port that turns out to be taken is replaced by another free one (up to 5 tries);
        after :meth:`stop`, a new :meth:`start` tries the previous port first.
        """
        if self.running:
            return self
        if not self._prepared:
            self._prepare()
        errors: list[str] = []
        for _ in range(5):
            if not self.port:
                self.port = _free_port(self.address, self.netns)
            self._write_sshd_config()
            self.check_config()
            try:
                self._launch()
            except _PortInUse as err:
                errors.append(str(err))
                self.port = 0
                continue
            self._write_client_files()
            if self.authorize_client_key and not self._client_authorized:
                self.authorize_client()
            return self
        raise SSHSandboxError("no free port for sshd after 5 tries:\n" + "\n".join(errors))

    def stop(self) -> None:
        """Stop sshd and everything it started: SIGTERM, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            # Who is in sshd's mount namespace, taken while it still exists: once it is
            # gone, the kernel reuses its inode number for a new namespace (every
            # ``ip netns exec`` makes one), and a later scan would match other tests'
            # processes. Each is named by pid and start time, so a reused pid is spared.
            members = [(p, start_time(p)) for p in self._pids_in_mntns()] if self._mntns else []
            if self.pid is not None and self.pid != proc.pid:
                # sshd is init of its pid namespace: its exit kills the whole sandbox
                # and lets ``unshare`` exit.
                terminate([self.pid])
            terminate_tree(proc.pid)
            # Sessions' processes that detached from sshd (nohup ... &), e.g. without root.
            terminate(pids_with_env(self.token))
            terminate([p for p, started in members if start_time(p) == started])
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL already sent
                proc.kill()
                proc.wait(timeout=5)
        self.pid = None
        self._mntns = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again (same port when still free)."""
        self.stop()
        self.start()

    def reload(self, timeout: float = START_TIMEOUT) -> None:
        """Re-read the configuration (drop-ins included): validate, SIGHUP, wait for listen.

        sshd answers SIGHUP by re-executing itself (same pid, same mount namespace) and
        logs a new "Server listening on" line, which is what we wait for.
        """
        if not self.running or self.pid is None:
            raise SSHSandboxError("reload: sshd is not running")
        self.check_config()
        before = self.log_text().count(LISTENING)
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text().count(LISTENING) > before:
                return
            if not self.running:
                raise SSHSandboxError(f"sshd died on reload:\n{self.log_text()}")
            time.sleep(0.02)
        raise SSHSandboxError(f"sshd did not listen again within {timeout}s:\n{self.log_text()}")

    # ------------------------------------------------------------------ configuration

    def add_dropin(self, name: str, text: str) -> Path:
        """Write ``sshd_config.d/<name>.conf``. It overrides the main file (first value
        wins and the Include is the first line). Takes effect on :meth:`reload`."""
        self.dropin_dir.mkdir(mode=0o755, exist_ok=True)
        path = self.dropin_dir / f"{name}.conf"
        path.write_text(text if text.endswith("\n") else text + "\n")
        path.chmod(0o644)
        return path

    def check_config(self) -> None:
        """Validate the configuration with ``sshd -t``; raise with sshd's output if invalid."""
        done = subprocess.run(
            self._config_argv([SSHD, "-t", "-f", self.sshd_config_in_namespace]),
            capture_output=True, text=True, timeout=30,
        )
        if done.returncode != 0:
            raise SSHSandboxError(
                f"invalid sshd config {self.sshd_config_path}:\n{done.stdout}{done.stderr}"
            )

    def effective_config(self, user: str | None = None, host: str = "client",
                         addr: str = "127.0.0.1") -> dict[str, list[str]]:
        """``sshd -T -C user=..,host=..,addr=..``: keyword (lower case) -> list of values."""
        spec = f"user={user or self.user},host={host},addr={addr}"
        done = subprocess.run(
            self._config_argv([SSHD, "-T", "-C", spec, "-f", self.sshd_config_in_namespace]),
            capture_output=True, text=True, timeout=30,
        )
        if done.returncode != 0:
            raise SSHSandboxError(f"sshd -T failed:\n{done.stdout}{done.stderr}")
        out: dict[str, list[str]] = {}
        for line in done.stdout.splitlines():
            key, _, value = line.partition(" ")
            out.setdefault(key, []).append(value)
        return out

    # ------------------------------------------------------------------ keys

    def authorize(self, key: str | Path, options: str = "") -> None:
        """Append a public key to the user's authorized_keys, with optional key options
        (e.g. ``'restrict,port-forwarding'``). ``key`` is a key line or a path to a .pub."""
        if isinstance(key, Path) or (not key.lstrip().startswith(("ssh-", "ecdsa-", "sk-"))
                                     and os.path.exists(key)):
            line = Path(key).read_text().strip()
        else:
            line = key.strip()
        if options:
            line = f"{options} {line}"
        path = self.authorized_keys_path
        with open(path, "a") as fh:
            fh.write(line + "\n")
        path.chmod(0o600)
        if self.is_root:
            os.chown(path, self.uid, self.gid)

    def authorize_client(self) -> None:
        """Authorize the sandbox client key (done by :meth:`start` unless disabled)."""
        self.authorize(self.client_key_pub)
        self._client_authorized = True

    # ------------------------------------------------------------------ client

    def ssh_argv(self, *remote_args: str, options: Sequence[str] = ()) -> list[str]:
        """argv for ``ssh -F client_config [options] sandbox -- remote_args`` (in the
        sandbox's netns, if any). ``options`` come first, so they win over the
        defaults added here (BatchMode=yes, ConnectTimeout=10)."""
        argv = [SSH, "-F", str(self.client_config), *options,
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", self.alias]
        if remote_args:
            argv += ["--", *remote_args]
        return self.netns_prefix() + argv

    def ssh(self, *remote_args: str, options: Sequence[str] = (), timeout: float = 30,
            check: bool = False, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command on the sandbox with real ssh and the client config (text mode,
        output captured). ``SSH_AUTH_SOCK`` is removed so no agent key interferes.

        As with any ssh, the remote arguments are joined with spaces and run by the
        remote user's shell: pass one shell string (``'echo "$HOME"; id -u'``) or
        quote with :func:`shlex.join`."""
        run_env = dict(os.environ if env is None else env)
        run_env.pop("SSH_AUTH_SOCK", None)
        return subprocess.run(
            self.ssh_argv(*remote_args, options=options), capture_output=True, text=True,
            timeout=timeout, check=check, input=input,
            stdin=None if input is not None else subprocess.DEVNULL, env=run_env,
        )

    def netns_prefix(self) -> list[str]:
        """``['ip', 'netns', 'exec', NS]`` when the sandbox is in a netns, else []."""
        return [IP, "netns", "exec", self.netns] if self.netns else []

    # ------------------------------------------------------------------ log

    def log_text(self) -> str:
        """Everything sshd logged so far (stderr, LogLevel VERBOSE), ``\\n`` line ends."""
        return self._log_since(0)

    def _log_since(self, offset: int) -> str:
        """Log text after byte ``offset`` (sshd -e ends lines with CRLF; made LF here)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return ""
        return data.decode(errors="replace").replace("\r\n", "\n")

    def accepted_count(self) -> int:
        """Number of "Accepted publickey" lines in the sshd log."""
        return self.log_text().count(ACCEPTED_PUBLICKEY)

    def wait_for_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> str:
        """Wait until regex ``pattern`` matches ``count`` times in the log; return the log."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if len(re.findall(pattern, text)) >= count:
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} not in sshd log after {timeout}s:\n{text}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ internals

    _client_authorized = False

    def _prepare(self) -> None:
        """Create directories, host and client keys, user database copies and home."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o755)  # the remote user must traverse it to reach its home
        self.dropin_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.client_dir.mkdir(mode=0o700, exist_ok=True)
        for key in (self.host_key, self.client_key):
            subprocess.run(
                [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", f"mkdoctor-test-{key.name}",
                 "-f", str(key)], check=True, capture_output=True, timeout=30,
            )
            key.chmod(0o600)
        self.log_path.touch()
        if self.is_root:
            run_sshd = Path("/run/sshd")  # privilege separation chroot
            run_sshd.mkdir(mode=0o755, exist_ok=True)
            os.chown(run_sshd, 0, 0)
            run_sshd.chmod(0o755)
            self._prepare_user_db()
            self._prepare_home()
            if self.sudo:
                self._prepare_sudo()
        else:
            self.authorized_keys_path.touch(mode=0o600)
        self._prepared = True

    def _prepare_sudo(self) -> None:
        """The private ``/etc/ssh`` (config dir, drop-ins, moduli and client config
        copies; no host keys) and the sudoers file (root, 0440, as sudo demands)."""
        self.etc_ssh_dir.mkdir(mode=0o755, exist_ok=True)
        self.dropin_dir.mkdir(mode=0o755, exist_ok=True)
        real = Path("/etc/ssh")
        for name in ("moduli", "ssh_config"):
            if (real / name).is_file():
                shutil.copy2(real / name, self.etc_ssh_dir / name)
        if (real / "ssh_config.d").is_dir():
            shutil.copytree(real / "ssh_config.d", self.etc_ssh_dir / "ssh_config.d",
                            dirs_exist_ok=True)
        rule = "ALL=(ALL:ALL) ALL" if self.sudo_password else "ALL=(ALL:ALL) NOPASSWD: ALL"
        # Debian's defaults (env_reset, secure_path, use_pty), minus everything that
        # would write outside the namespace's private /run (syslog, mail, lecture files).
        self.sudoers_path.write_text(
            "# mkdoctor test sandbox: only the sandbox user, only inside its namespace\n"
            "Defaults env_reset\n"
            'Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
            "Defaults use_pty\n"
            "Defaults !syslog, !mail_badpass, !mail_no_user, !mail_no_perms, lecture=never\n"
            "Defaults timestampdir=/run/sudo/ts\n"
            "root ALL=(ALL:ALL) ALL\n"
            f"{self.user} {rule}\n"
        )
        os.chown(self.sudoers_path, 0, 0)
        self.sudoers_path.chmod(0o440)
        done = subprocess.run(["visudo", "-c", "-q", "-f", str(self.sudoers_path)],
                              capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise SSHSandboxError(f"generated sudoers is invalid: {done.stdout}{done.stderr}")

    def _prepare_user_db(self) -> None:
        """Copies of passwd/group/shadow with the sandbox user appended (uid == gid)."""
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        shadow = Path("/etc/shadow").read_text()
        names = {line.split(":", 1)[0] for line in passwd.splitlines() + group.splitlines()}
        if self.user in names:
            raise SSHSandboxError(f"user or group {self.user!r} already exists on this machine")
        used = {int(f[2]) for f in (line.split(":") for line in passwd.splitlines() +
                                    group.splitlines()) if len(f) > 2 and f[2].isdigit()}
        while True:
            uid = secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0]
            if uid not in used:
                break
        self.uid = self.gid = uid
        crypted = _crypt_sha512(self.password) if self.password is not None else "*"
        days = (datetime.date.today() - datetime.date(1970, 1, 1)).days

        def add(text: str, line: str) -> str:
            return (text if text.endswith("\n") or not text else text + "\n") + line + "\n"

        self.etc_dir.mkdir(mode=0o755, exist_ok=True)
        files = {
            "passwd": (add(passwd, f"{self.user}:x:{uid}:{uid}:mkdoctor test sandbox:"
                                   f"{self.home}:{self.login_shell}"), 0o644),
            "group": (add(group, f"{self.user}:x:{uid}:"), 0o644),
            "shadow": (add(shadow, f"{self.user}:{crypted}:{days}:0:99999:7:::"), 0o600),
        }
        for name, (text, mode) in files.items():
            path = self.etc_dir / name
            path.write_text(text)
            path.chmod(mode)

    def _prepare_home(self) -> None:
        """``home/<user>`` (0755), ``~/.ssh`` (0700), ``authorized_keys`` (0600), all the user's."""
        (self.base_dir / "home").mkdir(mode=0o755, exist_ok=True)
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        self.authorized_keys_path.touch()
        for path, mode in ((self.home, 0o755), (ssh_dir, 0o700),
                           (self.authorized_keys_path, 0o600)):
            os.chown(path, self.uid, self.gid)
            path.chmod(mode)

    def _write_sshd_config(self) -> None:
        """The complete sshd_config; the drop-in Include is first so drop-ins win."""
        include = "/etc/ssh/sshd_config.d" if self.sudo else str(self.dropin_dir)
        lines = [
            f"Include {include}/*.conf",
            f"ListenAddress {_host_for(self.address, self.port)}",
            f"HostKey {self.host_key}",
            # With sudo, /run is the namespace's own tmpfs (see the module docstring).
            "PidFile " + ("/run/sshd.pid" if self.sudo else "none"),
            "UsePAM no",
            "PermitRootLogin no",
            # Without root the sandbox lives under world-writable /tmp, which StrictModes
            # rejects for an AuthorizedKeysFile outside the home directory.
            f"StrictModes {'yes' if self.is_root else 'no'}",
            "PubkeyAuthentication yes",
            f"PasswordAuthentication {'yes' if self.password is not None else 'no'}",
            "PermitEmptyPasswords no",
            "KbdInteractiveAuthentication no",
            "AuthorizedKeysFile " + (".ssh/authorized_keys .ssh/authorized_keys2"
                                     if self.is_root else str(self.authorized_keys_path)),
            "AllowTcpForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel VERBOSE",
            "MaxStartups 100",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            f"SetEnv {self.token}",
        ]
        if self.is_root:
            # Only the sandbox user may log in: never a real account of this machine.
            lines.append(f"AllowUsers {self.user}")
        if openssh_version() >= (9, 8):
            lines.append("PerSourcePenalties no")
        text = "\n".join(lines) + "\n"
        if self.extra_config:
            text += "# extra_config\n" + self.extra_config.strip("\n") + "\n"
        self.sshd_config_path.write_text(text)
        self.sshd_config_path.chmod(0o644)

    def _write_client_files(self) -> None:
        """known_hosts (``[addr]:port`` + host key) and the ``Host sandbox`` ssh_config."""
        keytype, blob = self.host_key_pub.read_text().split()[:2]
        self.known_hosts.write_text(f"[{self.address}]:{self.port} {keytype} {blob}\n")
        self.known_hosts.chmod(0o600)
        self.client_config.write_text(
            f"Host {self.alias}\n"
            f"    HostName {self.address}\n"
            f"    Port {self.port}\n"
            f"    User {self.user}\n"
            f"    IdentityFile {self.client_key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {self.known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    UpdateHostKeys no\n"
        )
        self.client_config.chmod(0o644)

    def _mount_script(self) -> str:
        """Shell commands (run in sshd's private mount namespace before it starts) that
        show each :attr:`bind_mounts` source at its target path."""
        q = shlex.quote
        cmds: list[str] = []
        if self.sudo:
            # Private /run (pid file, privsep dir, sudo's timestamps; hides this machine's
            # init and bus sockets), /etc/ssh and /etc/sudoers (module docstring).
            cmds += ["mount -t tmpfs -o mode=0755,size=8m mkdrun /run",
                     "mkdir -m 0755 /run/sshd",
                     f"mount --bind {q(str(self.etc_ssh_dir))} /etc/ssh",
                     f"mount --bind {q(str(self.sudoers_path))} /etc/sudoers"]
        for n, (target, source) in enumerate(sorted(self.bind_mounts.items())):
            tpath = Path(target)
            if not tpath.is_absolute() or ".." in tpath.parts:
                raise SSHSandboxError(f"bind_mounts: {target!r} must be an absolute path")
            if not source.is_dir():
                raise SSHSandboxError(f"bind_mounts: {source} is not a directory")
            if not tpath.exists():
                parent = tpath.parent
                while not parent.exists():
                    parent = parent.parent
                if parent == Path("/"):
                    raise SSHSandboxError(f"bind_mounts: no existing parent for {target} but /")
                # A layer holding the missing directories, overlaid (read-only) on the parent.
                layer = self.base_dir / "mounts" / f"layer{n}"
                d = layer / tpath.relative_to(parent)
                d.mkdir(parents=True, exist_ok=True)
                while True:  # the overlay shows these modes to the sandbox user
                    d.chmod(0o755)
                    if d == layer:
                        break
                    d = d.parent
                cmds.append(f"mount -t overlay mkdoverlay -o lowerdir={q(str(layer))}:{q(str(parent))} "
                            f"{q(str(parent))}")
            cmds.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
        return "".join(c + " && " for c in cmds)

    def _command(self) -> list[str]:
        """How sshd is started: [ip netns exec NS] [unshare --mount ... sh -c MOUNT] sshd."""
        sshd = [SSHD, "-D", "-e", "-f", str(self.sshd_config_path)]
        if self.is_root:
            etc = self.etc_dir
            # New mount namespace (the user database overlay) and new pid namespace with
            # sshd as its init: sshd reaps orphans (this machine's pid 1 may not) and
            # when it dies the kernel kills every process left in the sandbox.
            sshd = [UNSHARE, "--mount", "--propagation", "private", "--pid", "--fork",
                    "--kill-child", "--mount-proc", "/bin/sh", "-c",
                    self._mount_script() + _MOUNT_AND_EXEC, "sh", str(etc / "passwd"), str(etc / "group"),
                    str(etc / "shadow"), SSHD, self.sshd_config_in_namespace]
        return self.netns_prefix() + sshd

    def _config_argv(self, argv: list[str]) -> list[str]:
        """``argv`` (sshd -t / -T) as the sandbox sshd would see its files: with
        :attr:`sudo` in a throwaway mount namespace with the same mounts (so
        ``/etc/ssh`` is the sandbox's), else as is."""
        if not self.sudo:
            return argv
        etc = self.etc_dir
        return [UNSHARE, "--mount", "--propagation", "private", "/bin/sh", "-c",
                self._mount_script() + _MOUNT_AND_RUN, "sh", str(etc / "passwd"),
                str(etc / "group"), str(etc / "shadow"), *argv]

    def _launch(self) -> None:
        """Start sshd and wait for "Server listening on"; :class:`_PortInUse` if taken."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            self._command(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            close_fds=True, start_new_session=True, preexec_fn=_die_with_parent,
        )
        self.pid = self._proc.pid
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = self._log_since(offset)
            if LISTENING in text:
                break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                exited = self._proc.poll() is not None
                self.stop()
                if "Address already in use" in text:
                    raise _PortInUse(text)
                what = "exited" if exited else f"did not listen within {START_TIMEOUT}s"
                raise SSHSandboxError(
                    f"sshd {what}; command: {shlex.join(self._command())}\nlog:\n{text}"
                )
            time.sleep(0.02)
        if self.is_root:
            # Popen's pid is ``unshare``; sshd is its only child (pid 1 of its namespace).
            children = [p for p in descendants(self._proc.pid) if _exe(p) == SSHD]
            if len(children) != 1:
                self.stop()
                raise SSHSandboxError(f"cannot find the sshd child of unshare: {children}")
            self.pid = children[0]
            self._mntns = os.readlink(f"/proc/{self.pid}/ns/mnt")

    def _pids_in_mntns(self) -> list[int]:
        """Pids in sshd's private mount namespace (sshd, sessions, the user's processes)."""
        out = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.readlink(f"/proc/{name}/ns/mnt") == self._mntns:
                        out.append(int(name))
                except OSError:
                    continue
        return [p for p in out if is_alive(p)]


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


class _PortInUse(Exception):
    """sshd could not bind its port (someone took it between pick and bind)."""
