"""The run's one SSH connection, through the system OpenSSH client.

Every remote operation goes through the ``ssh`` binary the front end will use, so the
user's ``~/.ssh/config`` (or ``--ssh-config``, passed as ``-F``), agent, ProxyJump and
known_hosts are exercised exactly as the front end will exercise them.

One authentication per run, enforced: :meth:`SSHClient.login` starts a ControlMaster
(``ssh -M -N -f``) on a socket in a private 0700 directory; every later command is a
multiplexed session on that socket (:data:`MUX_ONLY`), and :meth:`SSHClient.close` ends
the master with ``-O exit``. With ``ControlMaster=no`` and a ControlPath whose socket is
gone, ssh does not fail: it "connects directly" (ssh(1) falls back to a connection of its
own when the mux client cannot reach the master), which would be a second, silent login.
So a multiplexed command also carries ``ProxyCommand=false``: the mux client never uses
ProxyCommand (it talks to the master over the socket), but a fallback connection must
run it, and ``false`` exits before any byte reaches the server. A master that died is
then a clear failure (:attr:`LoginResult.lost`, :meth:`SSHClient.run`), never a login. ``BatchMode=yes`` everywhere:
nothing ever prompts. Host-key checking is never relaxed.

Remote commands are argument lists quoted with :func:`shlex.quote` and run by ``sh``;
their output is framed by a random sentinel, so text printed by the login shell's
startup files ("noise") and the command's own exit status can never be confused with
ssh's own exit status 255.

sshd hands the command line to the account's login shell (``$SHELL -c``), which may
be csh/tcsh or fish rather than a POSIX shell: :func:`login_shell_command` writes the
one line every one of them reads the same way.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shlex
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional, Sequence, Union

from mkdoctor.proc import Completed, ProcessRunner, record

# Characters a script keeps as they are inside login_shell_command's quoted word; every
# other byte is written as a printf %b octal escape (\0ooo). What is left means the same
# inside single quotes to sh, bash, zsh, ksh, csh/tcsh and fish: no newline (csh ends the
# quoted word there: "Unmatched '"), no '!' (csh history), no backslash pair (fish reads
# \\ and \' inside single quotes), no quote of any kind.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,:/=+-@%")
# each byte as it travels: itself when plain (all plain characters are ASCII), else \0ddd
_ESCAPED = tuple(chr(b) if chr(b) in _PLAIN else f"\\0{b:03o}" for b in range(256))


def login_shell_command(script: str) -> str:
    """The remote command line that runs the POSIX ``sh`` script ``script`` whatever the
    account's login shell (pure).

    sshd runs the command line with the login shell (sshd(8), LOGIN PROCESS: "All
    commands are run under the user's login shell as specified in the system password
    database"). Sent as it is, a multi-line ``sh -c
    '...'`` breaks under csh/tcsh and a backslash pair changes under fish, so the
    script travels as one word of plain characters and octal escapes, decoded by
    ``sh``'s own printf (POSIX printf %b: "\\0ddd") and run with ``eval``.
    """
    encoded = "".join(map(_ESCAPED.__getitem__, script.encode("utf-8")))
    return "exec sh -c " + shlex.quote(f"eval \"$(printf %b '{encoded}')\"")


@dataclass
class RemoteResult:
    """A remote command's outcome. ``exit_code`` is None when the command never reported
    back (ssh failed, the connection broke, or the step timed out)."""

    exit_code: Optional[int]
    stdout: str
    stderr: str
    noise: str = ""  # what the login shell printed before our command started
    ssh: Optional[Completed] = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class LoginResult:
    ok: bool
    stderr: str
    returncode: Optional[int]
    timed_out: bool = False
    commands: list[str] = field(default_factory=list)
    dropped: bool = False  # the server dropped it before authentication, twice
    lost: bool = False  # the login worked, but the master connection has ended since


# Options for a multiplexed command: use the master or fail, never connect anew (see the
# module docstring). ProxyCommand given first wins over a ProxyJump of the config
# (ssh_config(5): the first obtained value is used), so a jump host is not contacted either.
MUX_ONLY = ("-o", "ControlMaster=no", "-o", "BatchMode=yes", "-o", "ProxyCommand=false")


def lost_master_message(control_path: str) -> str:
    return (f"the run's SSH connection ended (its ControlMaster {control_path} is gone): "
            "mkdoctor logs in once per run and does not log in a second time")


class RemoteUnavailable(Exception):
    """No connection to the remote host (login failed or was never possible)."""


def _control_dir() -> str:
    # Unix sockets have a ~104-108 byte path limit: prefer the short /tmp over a long
    # $TMPDIR (macOS). mkdtemp creates the directory with mode 0700.
    base = "/tmp" if os.path.isdir("/tmp") else None
    return tempfile.mkdtemp(prefix="mkd-", dir=base)


class SSHClient:
    def __init__(
        self,
        destination: str,
        runner: ProcessRunner,
        *,
        user: Optional[str] = None,
        port: Optional[int] = None,
        ssh_config: Optional[Path] = None,
        identity: Optional[Path] = None,
        connect_timeout: float = 5.0,
        ssh_binary: str = "ssh",
        gate: Optional[Callable[[float], ContextManager[Any]]] = None,
    ) -> None:
        self.destination = destination
        self.user = user
        self.port = port
        self.ssh_config = ssh_config
        self.identity = identity
        self.connect_timeout = connect_timeout
        self.ssh_binary = ssh_binary
        self.runner = runner
        self.gate = gate
        self._dir: Optional[str] = None
        self._lock = threading.Lock()  # the login (held while authenticating)
        # ssh -G and the shared objects have their own: a check that reads the config
        # while the login runs (MK303 beside MK304) must not wait for the authentication
        self._config_lock = threading.Lock()
        self._shared_lock = threading.Lock()
        self._login: Optional[LoginResult] = None
        self._master_pid: Optional[int] = None  # what ssh -O check named
        self._config: Optional[dict[str, list[str]]] = None
        self.token = "MKD" + secrets.token_hex(8)
        self._shared: dict[str, Any] = {}

    def shared(self, key: str, factory: Callable[[], Any]) -> Any:
        """One object per connection for ``key`` (made by ``factory`` on first use): what
        the checks of every context over this connection share about the host (setup runs
        several contexts over one session), e.g. the kernels this run has running there."""
        with self._shared_lock:
            if key not in self._shared:
                self._shared[key] = factory()
            return self._shared[key]

    # --- command lines ----------------------------------------------------------------

    def base_args(self) -> list[str]:
        """``ssh`` with the run's options (config file, identity, user, port). The
        destination is not included: append ``--``-safe arguments after it."""
        args = [self.ssh_binary]
        if self.ssh_config:
            args += ["-F", str(self.ssh_config)]
        if self.identity:
            args += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.user:
            args += ["-l", self.user]
        if self.port:
            args += ["-p", str(self.port)]
        args += [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout))}",
        ]
        return args

    @property
    def control_path(self) -> str:
        if self._dir is None:
            self._dir = _control_dir()
        return os.path.join(self._dir, "cm")

    def mux_args(self) -> list[str]:
        """``ssh`` for a command through the master: fails when the master is gone."""
        return self.base_args() + [*MUX_ONLY, "-o", f"ControlPath={self.control_path}"]

    def master_alive(self, timeout: float = 5.0) -> bool:
        """The master is still there (no login either way). Asked once with ``ssh -O
        check``, which names its process; afterwards that process and its socket are
        looked at here (every check that reuses the login asks: one ssh process less
        each time)."""
        if self._dir is None or not os.path.exists(self.control_path):
            return False
        if self._master_pid is not None:
            return _running(self._master_pid)
        done = self.runner.run(self.mux_args() + ["-O", "check", "--", self.destination],
                               timeout)
        found = re.search(r"pid=(\d+)", done.stderr or "")
        if done.returncode == 0 and found:
            self._master_pid = int(found.group(1))
        return done.returncode == 0

    # --- ssh -G -----------------------------------------------------------------------

    def config(self, timeout: float = 5.0) -> dict[str, list[str]]:
        """The effective client configuration for the destination (``ssh -G``), keys
        lower-case, each with all its values (``identityfile`` has several)."""
        with self._config_lock:
            if self._config is None:
                from mkdoctor.openssh import client_config

                args = self._without_run_options(self.base_args())
                try:
                    self._config = client_config.read_ssh_g(
                        lambda argv: self.runner.run(argv, timeout), self.destination, base=args)
                except client_config.SshGError as exc:
                    raise RemoteUnavailable(str(exc)) from None
            return self._config

    @staticmethod
    def _without_run_options(args: list[str]) -> list[str]:
        out: list[str] = []
        skip = False
        for i, a in enumerate(args):
            if skip:
                skip = False
                continue
            if a == "-o" and i + 1 < len(args) and args[i + 1].startswith(("BatchMode=", "ConnectTimeout=")):
                skip = True
                continue
            out.append(a)
        return out

    def config_value(self, key: str, default: str = "") -> str:
        values = self.config().get(key.lower())
        return values[0] if values else default

    # --- the master connection -----------------------------------------------------------

    def login(self, timeout: float, strict_host_key: bool = False,
              again: bool = False) -> LoginResult:
        """Authenticate once and keep the connection as the run's ControlMaster.

        Idempotent: later calls return the first outcome. With a ``gate`` (the run's
        limit of simultaneous logins per first hop, mkdoctor.fleet) the login waits for a
        slot first. A login that the server dropped before authentication (its
        MaxStartups, mkdoctor.fleet.startup_dropped) is tried once more after a short
        pause; ``LoginResult.dropped`` says when that happened twice.

        ``strict_host_key``: refuse any host key that known_hosts does not hold
        (``StrictHostKeyChecking=yes``, whatever the user's config says), for a login that
        runs while MK303 is still judging the key: nothing is ever sent to a server whose
        key is unknown or changed. ``again``: forget a failed first outcome and try once
        more (a login that failed before authenticating, as a refused host key does).

        Once the master has ended, a failed :class:`LoginResult` with ``lost`` set (and the
        reason): never a second login.
        """
        with self._lock:
            # (a lost master is never retried: that would be a second login)
            if again and self._login is not None and not self._login.ok and not self._login.lost:
                self._login = None
        if self._login is None and self.gate is not None:
            with self.gate(timeout):
                return self._login_once(timeout, strict_host_key)
        return self._login_once(timeout, strict_host_key)

    def _login_once(self, timeout: float, strict_host_key: bool = False) -> LoginResult:
        from mkdoctor.fleet import retry_pause, startup_dropped

        with self._lock:
            if self._login is None:
                login = self._start_master(timeout, strict_host_key)
                if not login.ok and not login.timed_out and startup_dropped(login.stderr):
                    record("(the server dropped the login before authentication: "
                           "one more try after a pause)")
                    time.sleep(retry_pause())
                    login = self._start_master(timeout, strict_host_key)
                    login.dropped = (not login.ok and not login.timed_out
                                     and startup_dropped(login.stderr))
                self._login = login
            elif self._login.ok and not self.master_alive(timeout):
                self._login = LoginResult(False, lost_master_message(self.control_path), None,
                                          lost=True)
            else:
                record(f"(reusing the run's SSH connection {self.control_path})")
            return self._login

    def login_with_prompt(self, timeout: float) -> LoginResult:
        """Like :meth:`login`, but ssh may ask on this terminal (a password, once): the
        master starts without ``BatchMode`` and in this process's session, so ssh reads
        the answer from ``/dev/tty`` itself (it never passes through mkdoctor); after
        the authentication ``-f`` sends it to the background, and every later command
        shares that one login. ssh's messages go to the terminal too."""
        import subprocess

        with self._lock:
            if self._login is not None:
                return self._login
            args = [a for a in self._master_args()]
            i = args.index("BatchMode=yes")
            del args[i - 1:i + 1]
            try:
                done = subprocess.run(args, stdout=subprocess.DEVNULL, timeout=timeout)
                rc: Optional[int] = done.returncode
                timed_out = False
            except subprocess.TimeoutExpired:
                rc, timed_out = None, True
            ok = rc == 0 and os.path.exists(self.control_path)
            why = "" if ok else ("no answer in time" if timed_out else f"ssh exited with {rc}")
            self._login = LoginResult(ok, why, rc, timed_out, [shlex.join(args)])
            return self._login

    def _master_args(self, strict_host_key: bool = False) -> list[str]:
        strict = ["-o", "StrictHostKeyChecking=yes"] if strict_host_key else []
        return self.base_args() + strict + [
            "-M", "-N", "-f",
            "-o", "ControlMaster=yes",
            "-o", f"ControlPath={self.control_path}",
            "-o", "ControlPersist=no",
            "-o", "ServerAliveInterval=10",
            "-o", "ServerAliveCountMax=3",
            "-o", "ExitOnForwardFailure=yes",
            "--", self.destination,
        ]

    def _start_master(self, timeout: float, strict_host_key: bool = False) -> LoginResult:
        log = os.path.join(os.path.dirname(self.control_path), "master.log")
        args = self._master_args(strict_host_key)
        # stdout+stderr to a file, not a pipe: the backgrounded master keeps them open.
        done = self.runner.run(args, timeout, stdout_path=log)
        try:
            text = Path(log).read_text(errors="replace")
        except OSError:
            text = ""
        ok = done.returncode == 0 and os.path.exists(self.control_path)
        return LoginResult(ok, text.strip(), done.returncode, done.timed_out, [shlex.join(args)])

    @property
    def connected(self) -> bool:
        return bool(self._login and self._login.ok)

    def control(self, operation: str, *extra: str, timeout: float = 5.0) -> Completed:
        """``ssh -O operation`` on the master (``check``, ``forward``, ``cancel``, ``exit``)."""
        return self.runner.run(
            self.mux_args() + ["-O", operation, *extra, "--", self.destination], timeout
        )

    # --- remote commands ---------------------------------------------------------------

    def wrap(self, command: Union[Sequence[str], str]) -> str:
        """The remote command line: the body framed by sentinels on stdout and stderr,
        run by ``sh`` whatever the login shell is. The body runs in a subshell, so a
        script that ends with ``exit N`` still reports N after it."""
        body = command if isinstance(command, str) else shlex.join(list(command))
        t = self.token
        script = (
            f"printf '%s\\n' {t}; printf '%s\\n' {t} >&2; (\n"
            f"{body}\n"
            f")\n"
            f"__mkd_rc=$?; printf '\\n%s %s\\n' {t}-END \"$__mkd_rc\"; exit 0"
        )
        return login_shell_command(script)

    def run(
        self,
        command: Union[Sequence[str], str],
        timeout: float,
        input: Optional[str] = None,
        extra_ssh_args: Sequence[str] = (),
        stdin: Optional[int] = None,
    ) -> RemoteResult:
        """Run ``command`` on the remote host through the run's connection.

        ``command`` is an argument list (quoted here) or a ``sh`` script written by the
        caller with every interpolated value passed through :func:`shlex.quote`.
        ``stdin``: a file descriptor for ssh's standard input (see ProcessRunner.run).
        """
        if self._login is not None and self._login.lost:
            return RemoteResult(None, "", self._login.stderr)
        if not self.connected:
            raise RemoteUnavailable("no SSH connection to the remote host (MK304 passwordless-login)")
        args = self.mux_args() + list(extra_ssh_args) + ["-T", "--", self.destination]
        body = command if isinstance(command, str) else shlex.join(list(command))
        # -v shows the script itself, not its encoded form (login_shell_command)
        shown = shlex.join(args) + " <remote sh script>\n" + body.strip("\n")
        done = self.runner.run(args + [self.wrap(command)], timeout, input=input, stdin=stdin,
                               shown=shown)
        result = self.parse(done)
        if result.exit_code is None and not done.timed_out and not self.master_alive():
            # the master ended under this command (ssh refused to connect anew)
            with self._lock:
                self._login = LoginResult(False, lost_master_message(self.control_path), None,
                                          lost=True)
            result.stderr = lost_master_message(self.control_path) + (
                f" ({result.stderr.strip()})" if result.stderr.strip() else "")
        return result

    def parse(self, done: Completed) -> RemoteResult:
        t = self.token
        out, err = done.stdout, done.stderr
        noise_out, _, rest = out.partition(t + "\n") if (t + "\n") in out else (out, "", None)
        noise_err, _, rest_err = err.partition(t + "\n") if (t + "\n") in err else ("", "", err)
        exit_code: Optional[int] = None
        stdout = ""
        if rest is not None:
            end = f"\n{t}-END "
            idx = rest.rfind(end)
            if idx >= 0:
                stdout = rest[:idx]
                tail = rest[idx + len(end):].strip()
                if tail.isdigit():
                    exit_code = int(tail)
            else:
                stdout = rest
        noise = noise_out + noise_err
        return RemoteResult(exit_code, stdout, rest_err or "", noise, done, done.timed_out)

    def close(self) -> None:
        """End the master and remove the private socket directory. Safe to call twice."""
        if self._dir is None:
            return
        if os.path.exists(self.control_path):
            import signal
            import subprocess

            def ctl(op: str) -> str:
                try:
                    return subprocess.run(
                        self.mux_args() + ["-O", op, "--", self.destination],
                        stdin=subprocess.DEVNULL, capture_output=True, timeout=5, text=True,
                    ).stderr
                except (subprocess.TimeoutExpired, OSError):
                    return ""

            pid = self._master_pid
            if pid is None:
                m = re.search(r"pid=(\d+)", ctl("check"))
                pid = int(m.group(1)) if m else None
            ctl("exit")
            if pid is not None and os.path.exists(self.control_path):
                try:  # the master did not answer: end it by PID
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None


def _running(pid: int) -> bool:
    """A process that runs (a zombie does not: the master may have no parent that reaps)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class Endpoint:
    """Where ssh really connects first, from ``ssh -G``: the host itself, or the first
    jump host when ProxyJump is set. ``proxycommand`` means we cannot connect ourselves."""

    host: str
    port: int
    via: Optional[str] = None  # "ProxyJump jump.example.org" when the first hop is a jump host
    proxycommand: Optional[str] = None
    final_host: str = ""


def parse_jump(spec: str) -> tuple[str, Optional[int]]:
    """The first hop of a ProxyJump value ``[user@]host[:port][,next...]`` or an
    ``ssh://[user@]host[:port]`` URI."""
    first = spec.split(",", 1)[0].strip()
    if first.startswith("ssh://"):
        first = first[len("ssh://"):]
    host = first.rpartition("@")[2]
    port: Optional[int] = None
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host = inner
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, p = host.partition(":")
        port = int(p) if p.isdigit() else None
    return host, port


def endpoint(client: SSHClient, timeout: float = 5.0) -> Endpoint:
    cfg = client.config(timeout)
    host = (cfg.get("hostname") or [client.destination])[0]
    port = int((cfg.get("port") or ["22"])[0])
    jump = (cfg.get("proxyjump") or [""])[0]
    proxy = (cfg.get("proxycommand") or [""])[0]
    if jump and jump.lower() != "none":
        jhost, jport = parse_jump(jump)
        # The jump host may be a Host alias: its HostName (and, when the value gave no
        # port, its Port) come from the ssh config for that name, as ssh itself reads it.
        sub = SSHClient(jhost, client.runner, ssh_config=client.ssh_config)
        try:
            jcfg = sub.config(timeout)
            if jport is None:
                jport = int((jcfg.get("port") or ["22"])[0])
            jhost = (jcfg.get("hostname") or [jhost])[0]
        except RemoteUnavailable:
            jport = 22 if jport is None else jport
        return Endpoint(jhost, jport, via=f"ProxyJump {jump}", final_host=host)
    if proxy and proxy.lower() != "none":
        return Endpoint(host, port, proxycommand=proxy, final_host=host)
    return Endpoint(host, port, final_host=host)
