"""MK205 local-sshd: if this laptop runs an SSH server, root and password logins are off.

Not needed by the remote kernel, but a laptop SSH server is easily exposed: a router's
port forwarding, a public address, or a shared LAN puts it in reach of password-guessing
bots. The same rules as for the remote host apply, with the same code
(``mkdoctor.openssh.sshd_config``: the evaluator and the verdicts of MK310 and MK311):
``PermitRootLogin yes`` fails, ``prohibit-password``/``forced-commands-only`` warn;
password logins warn when the server listens beyond loopback.

Discovery (:func:`find_sshd`, pure): processes named ``sshd`` (``sshd.exe`` on Windows)
that listen on a TCP socket or carry the ``[listener]`` title, not the per-connection
children (``sshd: alice@pts/0``, ``[priv]``, ``[net]``, ``[accepted]``); the configuration
is the ``-f`` argument, else the platform's default. Each server is judged with its own
``sshd -T -C ... -f FILE`` when this user may run it (root), else by evaluating the file.
A process named ``sshd`` can be anyone's program, so its binary is run only when it is
safe to (:func:`trusted_binary`, the rule of sshd's own StrictModes): the file and every
directory above it owned by root or by this user and writable by nobody else. Otherwise
the file is evaluated instead and the details say why; the ``-f`` file is only read.
The connection judged is one from the internet (203.0.113.1, a documentation address)
when the server listens beyond loopback, from 127.0.0.1 otherwise.

macOS "Remote Login" starts sshd on demand from launchd, so no sshd process runs until
someone connects; this check then passes (nothing listens as sshd).
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

from mkdoctor.model import Check, Result, Status, passed, skipped
from mkdoctor.openssh.sshd_config import (
    DEFAULT_CONFIG,
    Connection,
    EffectiveConfig,
    PolicyVerdict,
    describe_source,
    evaluate,
    local_loader,
    oracle_config,
    password_verdict,
    root_login_verdict,
)

INTERNET_CLIENT = "203.0.113.1"  # RFC 5737: stands for "somebody on the internet"
MAX_SERVERS = 8
WINDOWS_CONFIG = r"C:\ProgramData\ssh\sshd_config"


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    name: str
    cmdline: tuple[str, ...] = ()
    exe: str = ""


@dataclass(frozen=True)
class Listener:
    pid: Optional[int]
    ip: str
    port: int


@dataclass
class LocalSshd:
    pid: int
    config: str
    binary: str
    listens: list[tuple[str, int]] = field(default_factory=list)

    @property
    def label(self) -> str:
        where = ", ".join(_hostport(ip, port) for ip, port in self.listens) or "unknown addresses"
        return f"sshd pid {self.pid} ({self.config}, listening on {where})"


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def find_sshd(procs: Sequence[ProcInfo], listeners: Sequence[Listener]) -> list[LocalSshd]:
    """The SSH servers among ``procs`` (pure): see the module docstring."""
    by_pid: dict[int, list[tuple[str, int]]] = {}
    for lst in listeners:
        if lst.pid is not None and (lst.ip, lst.port) not in by_pid.get(lst.pid, []):
            by_pid.setdefault(lst.pid, []).append((lst.ip, lst.port))
    found: list[LocalSshd] = []
    for proc in procs:
        name = (proc.name or "").lower()
        if name not in ("sshd", "sshd.exe"):
            continue
        words = " ".join(proc.cmdline).split()
        if proc.pid not in by_pid:
            child = any("@" in w for w in words) or any(
                w.startswith("[") and w != "[listener]" for w in words)
            if child or not words:
                continue
        config = WINDOWS_CONFIG if name == "sshd.exe" else DEFAULT_CONFIG
        for i, word in enumerate(words[:-1]):
            if word == "-f":
                config = words[i + 1]
            elif word.startswith("-f") and len(word) > 2 and not word.startswith("-f="):
                config = word[2:]
        binary = proc.exe or next((w for w in words if os.path.isabs(w) and
                                   os.path.basename(w).startswith("sshd")), "")
        found.append(LocalSshd(proc.pid, config, binary or "/usr/sbin/sshd",
                               sorted(by_pid.get(proc.pid, []))))
    return found


def exposure(server: LocalSshd, internet: Optional[bool]) -> tuple[bool, str]:
    """Can others reach this server? (exposed, why) (pure). ``internet`` is MK103's
    ``reachable_from_internet`` fact when known."""
    from mkdoctor.netinfo import parse_ip

    if not server.listens:
        return True, ("its listening addresses are unknown (run as root to see them): "
                      "counted as reachable from other computers")
    ips = [parse_ip(ip) for ip, _ in server.listens]
    if all(ip is not None and ip.is_loopback for ip in ips):
        return False, "it listens only on loopback: no other computer can reach it"
    why = ("it listens beyond loopback: computers on the same network can reach it, and the "
           "internet can too through a router's port forwarding")
    if internet:
        why += "; this laptop is reachable from the internet (MK103: no NAT)"
    return True, why


def judge(server: LocalSshd, cfg_root: EffectiveConfig, cfg_user: EffectiveConfig,
          exposed: bool, why: str, restart: str) -> list[PolicyVerdict]:
    """MK310's and MK311's verdicts for one local server (pure)."""
    return [root_login_verdict(cfg_root, restart),
            password_verdict(cfg_user, exposed, why, restart)]


def restart_command() -> str:
    if sys.platform == "darwin":
        return "sudo launchctl kickstart -k system/com.openssh.sshd"
    if os.name == "nt":
        return "Restart-Service sshd (PowerShell as Administrator)"
    return "sudo systemctl reload ssh (or sshd)"


# --- gathering (I/O) ------------------------------------------------------------------------


def gather() -> tuple[list[ProcInfo], list[Listener]]:
    import psutil

    procs: list[ProcInfo] = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "exe"]):
        info = proc.info
        if (info.get("name") or "").lower() not in ("sshd", "sshd.exe"):
            continue
        procs.append(ProcInfo(info["pid"], info.get("name") or "",
                              tuple(info.get("cmdline") or ()), info.get("exe") or ""))
    listeners: list[Listener] = []
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr:
                listeners.append(Listener(conn.pid, conn.laddr.ip, conn.laddr.port))
    except (psutil.AccessDenied, OSError):
        pass  # macOS without root: servers are still found by name
    return procs, listeners


def local_groups(user: str) -> Optional[tuple[str, ...]]:
    try:
        import grp
        import pwd

        pw = pwd.getpwnam(user)
        return tuple(grp.getgrgid(g).gr_name for g in os.getgrouplist(user, pw.pw_gid))
    except (ImportError, KeyError, OSError):
        return None


def connection(server: LocalSshd, user: str, exposed: bool) -> Connection:
    from mkdoctor.netinfo import parse_ip, route_source

    port = server.listens[0][1] if server.listens else 22
    if not exposed:
        return Connection(user, "127.0.0.1", "127.0.0.1", "127.0.0.1", port, local_groups(user))
    specific = [ip for ip, _ in server.listens
                if (a := parse_ip(ip)) is not None and not a.is_loopback and not a.is_unspecified]
    laddr = specific[0] if specific else (route_source("1.1.1.1") or "127.0.0.1")
    return Connection(user, INTERNET_CLIENT, INTERNET_CLIENT, laddr, port, local_groups(user))


def trusted_binary(path: str) -> tuple[str, str]:
    """``(file to run, "")`` when ``path`` is safe for this user to execute, else ``("", why)``.

    The path comes from a process named sshd, which any user can start (a copy of any
    program named sshd): running it as root would run that user's program with root's
    rights. Like sshd's StrictModes: symbolic links resolved (the resolved file is what
    runs, so a link cannot be swapped afterwards), a regular file, and it and every
    directory above it owned by root or by this user and writable by neither group nor
    others. Windows: only files under %SystemRoot% or %ProgramFiles%, which only
    administrators can change.
    """
    if not path or not os.path.isabs(path):
        return "", f"{path or 'its program'} is not an absolute path"
    real = os.path.realpath(path)
    if os.name == "nt":
        roots = [os.path.normcase(os.path.realpath(r)) + os.sep for r in
                 (os.environ.get("SystemRoot", r"C:\Windows"),
                  os.environ.get("ProgramFiles", r"C:\Program Files")) if r]
        if any(os.path.normcase(real).startswith(r) for r in roots):
            return real, ""
        return "", f"{real} is outside %SystemRoot% and %ProgramFiles%"
    owners = {0, os.geteuid()}
    here = real
    while True:
        try:
            st = os.stat(here)
        except OSError as exc:
            return "", f"{here}: {exc.strerror}"
        if here == real and not stat.S_ISREG(st.st_mode):
            return "", f"{real} is not a regular file"
        what = "it" if here == real else f"the directory {here}"
        if st.st_uid not in owners:
            return "", f"{what} belongs to {_user(st.st_uid)}, not to root or you"
        if st.st_mode & 0o022:
            return "", f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        parent = os.path.dirname(here)
        if parent == here:
            return real, ""
        here = parent


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def effective(ctx, server: LocalSshd, conn: Connection) -> EffectiveConfig:
    """``sshd -T`` for this server when permitted and its binary is safe to run, else the
    evaluator (the ``-f`` file is read, never run)."""
    binary, unsafe = trusted_binary(server.binary)
    done = None if unsafe else ctx.run_local([binary, "-T", "-C", conn.spec(), "-f", server.config])
    if done is not None and done.returncode == 0 and "permitrootlogin" in done.stdout:
        cfg = oracle_config(done.stdout, "sshd -T on this computer")
    else:
        cfg = evaluate(server.config, local_loader(), conn)
        if done is None:
            cfg.source += (f" (its program {server.binary} was not run as sshd -T: {unsafe}; "
                           "running it could run another user's program)")
        else:
            lines = (done.stderr or done.stdout).strip().splitlines()
            cfg.source += f" (sshd -T was not possible: {lines[-1] if lines else 'no output'})"
    cfg.place, cfg.main = "this computer", server.config
    return cfg


def run(ctx) -> Result:
    import getpass

    servers = find_sshd(*gather())
    if not servers:
        return passed("no SSH server runs on this computer")
    internet = ctx.fact("MK103", "reachable_from_internet")
    restart = restart_command()
    me = getpass.getuser()
    order = {Status.PASS: 0, Status.SKIP: 1, Status.WARN: 2, Status.FAIL: 3}
    worst: tuple[Status, str, str] = (Status.PASS, "", "")
    details: list[str] = []
    judged = 0
    for server in servers[:MAX_SERVERS]:
        exposed, why = exposure(server, internet)
        try:
            cfg_root = effective(ctx, server, connection(server, "root", exposed))
            cfg_user = cfg_root if me == "root" else effective(
                ctx, server, connection(server, me, exposed))
        except OSError as exc:  # the server went away while we looked
            details.append(f"{server.label}: could not check ({exc})")
            continue
        if cfg_root.error or cfg_user.error:
            details.append(f"{server.label}: could not check: {cfg_root.error or cfg_user.error}")
            continue
        judged += 1
        details.append(f"{server.label}: {why}")
        for verdict in judge(server, cfg_root, cfg_user, exposed, why, restart):
            status = Status(verdict.status)
            details.append(f"  {verdict.status}: {verdict.summary}")
            details += [f"    {d}" for d in verdict.details if d != why]
            if order[status] > order[worst[0]]:
                worst = (status, f"{verdict.summary} [{server.label}]", verdict.fix)
        details += [f"    {d}" for d in describe_source(cfg_user)]
        if cfg_user.problems and order[worst[0]] < order[Status.WARN]:
            worst = (Status.WARN, f"{server.config} has problems sshd would refuse: "
                     f"{cfg_user.problems[0]}", f"sudo sshd -t -f {shlex.quote(server.config)}")
    if len(servers) > MAX_SERVERS:
        details.append(f"... and {len(servers) - MAX_SERVERS} more sshd processes, not judged")
    if judged == 0:
        return skipped("skipped: an SSH server runs here, but its configuration could not be "
                       "read", "run mkdoctor as a user who can read it, or: sudo sshd -T",
                       details, servers=len(servers))
    status, summary, fix = worst
    if status == Status.PASS:
        return passed(f"{judged} SSH server(s) here: root login and password login are safe",
                      details, servers=len(servers))
    return Result(status, summary, details, fix, {"servers": len(servers)})


CHECK = Check(
    id="MK205",
    name="local-sshd",
    group="client",
    title="if the laptop runs an SSH server: root login off and password login off when it is exposed",
    run=run,
    needs=(),
    after=("MK103",),
    fix_hints=(
        ("", "harden this computer's sshd"),
    ),
)
