"""MK203 local-ports: the two link ports are free to listen on, on the laptop.

The front end listens on the two link ports (tunnel mode: on 127.0.0.1, where the
``ssh -R`` forwards arrive; direct mode: on the address the kernel connects back to).
When another program already holds one — typically a kernel link left over from an
earlier session, or an old ``ssh -R`` tunnel still running — the front end cannot
listen and the kernel connects to the wrong program. We try to bind each port for real
and, when it is taken, name the process that holds it (psutil) and how to end it.
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
from dataclasses import dataclass
from typing import Optional

from mkdoctor.model import Check, Result, failed, passed, skipped

ANY = "0.0.0.0"


@dataclass
class Holder:
    """The process that holds a port (pid None: could not be seen)."""

    pid: Optional[int]
    name: str = ""
    cmdline: str = ""
    note: str = ""  # why the owner could not be seen
    uid: Optional[int] = None

    def describe(self, full: bool = True) -> str:
        """``PID 123 (name)``, with the command line when ``full``."""
        if self.pid is None:
            return self.note or "an unknown process"
        what = f"PID {self.pid} ({self.name})"
        return what + (f": {self.cmdline}" if full and self.cmdline else "")


def try_bind(address: str, port: int) -> Optional[OSError]:
    """Bind (without listening) ``address:port`` as the front end would; None if free.

    SO_REUSEADDR on POSIX so that connections in TIME_WAIT do not count as "taken"
    (it never allows binding over a listening socket there). On Windows it would allow
    exactly that, so it is not set.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        return None
    except OSError as exc:
        return exc
    finally:
        sock.close()


def holders_of(port: int) -> list[Holder]:
    """The processes with a TCP socket listening on (or bound to) ``port``."""
    try:
        import psutil
    except ImportError:
        return [Holder(None, note="the owner cannot be named (psutil is not installed)")]
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return [Holder(None, note="the owner cannot be seen without administrator rights")]
    found = [c for c in conns if c.laddr and c.laddr.port == port]
    listening = [c for c in found if c.status == psutil.CONN_LISTEN] or found
    out: list[Holder] = []
    seen: set[Optional[int]] = set()
    for conn in listening:
        if conn.pid in seen:
            continue
        seen.add(conn.pid)
        if conn.pid is None:
            out.append(Holder(None, note="a process of another user (its owner cannot be "
                                         "seen without administrator rights)"))
            continue
        try:
            proc = psutil.Process(conn.pid)
            name = proc.name()
            try:
                cmd = shlex.join(proc.cmdline())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmd = ""
            try:
                uid: Optional[int] = proc.uids().real
            except (AttributeError, psutil.AccessDenied):  # no uids() on Windows
                uid = None
            cmd = " ".join(cmd.split())  # one line, whatever the arguments hold
            out.append(Holder(conn.pid, name, cmd[:200], uid=uid))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            out.append(Holder(conn.pid, "?", "", "the process could not be inspected"))
    return out


def kind_of(holder: Holder) -> str:
    """A guess at what the holder is, for the summary."""
    text = f"{holder.name} {holder.cmdline}".lower()
    if any(k in text for k in ("wolframkernel", "mathkernel", "wolfram", "mathematica", "mathlink", "wstp")):
        return "a stale kernel link"
    if "ssh" in holder.name.lower() and ("-r" in text.split() or " -r " in f" {holder.cmdline} "):
        return "an old ssh -R tunnel"
    if "ssh" in holder.name.lower():
        return "an ssh process (an old tunnel?)"
    return ""


def kill_command(holder: Holder) -> str:
    """The command that ends ``holder`` (with sudo when another user owns it)."""
    if os.name == "nt":
        return f"taskkill /PID {holder.pid} /F"
    sudo = "sudo " if holder.uid is not None and holder.uid != os.geteuid() else ""
    return f"{sudo}kill {holder.pid}"


def bind_address(ctx) -> tuple[str, str]:
    """(address, why) the front end listens on in the run's mode."""
    if ctx.mode == "tunnel":
        return "127.0.0.1", "tunnel mode: the ssh -R forwards arrive on 127.0.0.1"
    if ctx.options.link_host:
        return ctx.options.link_host, "direct mode: --link-host"
    found = ctx.fact("MK101", "link_address")
    if found:
        return str(found), "direct mode: the address MK101 found"
    return ANY, "direct mode: all addresses"


def run(ctx) -> Result:
    address, why = bind_address(ctx)
    details = [f"bind address: {address} ({why})"]
    ports = list(ctx.link_ports)
    taken: dict[int, list[Holder]] = {}
    problems: list[tuple[int, OSError]] = []
    for port in ports:
        err = try_bind(address, port)
        if err is not None and err.errno == errno.EADDRNOTAVAIL and address != ANY:
            details.append(f"{address} is not an address of this computer (behind NAT, the "
                           f"router forwards to this computer); tried {ANY} instead")
            address = ANY
            err = try_bind(address, port)
        if err is None:
            details.append(f"port {port}: free")
        elif err.errno == errno.EADDRINUSE:
            taken[port] = holders_of(port)
        else:
            problems.append((port, err))
    facts = {"bind_address": address, "ports": ports,
             "taken": {str(p): [h.pid for h in hs] for p, hs in taken.items()}}
    if taken:
        lines, fixes, kinds = [], [], []
        for port, hs in taken.items():
            if not hs:
                hs = [Holder(None, note="no process found (the socket is closing?)")]
            for h in hs:
                lines.append(f"port {port}: held by {h.describe()}")
                if h.pid is not None:
                    fixes.append(kill_command(h))
                if kind_of(h):
                    kinds.append(kind_of(h))
        first_port, first = next(iter(taken.items()))
        who = first[0].describe(full=False) if first else "another process"
        kind = f" ({kinds[0]})" if kinds else ""
        summary = (f"port{'s' if len(taken) > 1 else ''} {', '.join(map(str, taken))} "
                   f"already in use: {who}{kind}")
        if fixes:
            fix = " && ".join(dict.fromkeys(fixes)) + "  (or choose other ports: --link-ports P1,P2)"
        else:
            cmd = (f"netstat -ano | findstr :{first_port}" if os.name == "nt"
                   else f"sudo lsof -nP -iTCP:{first_port} -sTCP:LISTEN")
            fix = f"find the owner with {cmd} and end it, or choose other ports: --link-ports P1,P2"
        return failed(summary, fix, details + lines, **facts)
    if problems:
        port, err = problems[0]
        text = err.strerror or str(err)
        if err.errno in (errno.EACCES, getattr(errno, "WSAEACCES", -1)):
            extra = (" (Windows reserves port ranges: netsh interface ipv4 show excludedportrange "
                     "protocol=tcp)" if os.name == "nt" else "")
            return failed(f"not allowed to listen on port {port}: {text}",
                          "choose other ports: --link-ports P1,P2" + extra, details, **facts)
        return skipped(f"could not test port {port} on {address}: {text}",
                       "check --link-host and --link-ports", details, **facts)
    return passed(f"ports {ports[0]} and {ports[1]} are free on {address}", details, **facts)


CHECK = Check(
    id="MK203",
    name="local-ports",
    group="client",
    title="the two link ports are free on the laptop; if not, which process holds them",
    run=run,
    needs=(),
    after=("MK101", "MK103"),
    reads=("mode",),  # ctx.mode: waits for the check that decides it
    fix_hints=(
        ("", "free the link ports, or --link-ports"),
    ),
)
