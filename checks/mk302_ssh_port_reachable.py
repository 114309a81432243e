"""MK302 ssh-port-reachable: a TCP connection to the SSH port, and an ``SSH-2.0-`` banner.

Refused (nothing listens), timed out (a firewall drops the packets), no route, network
unreachable, and "something answers but it is not SSH" are told apart, because each has
a different fix. With ProxyJump the first hop (the jump host) is what we can reach.

The server speaks first: RFC 4253 section 4.2 says it sends ``SSH-protoversion-
softwareversion [comments]`` and may send other lines before it; protocol version 2.0
(or 1.99, "2.0 and 1.x") is what current OpenSSH speaks. The software version from the
banner is reported (``OpenSSH_9.2p1 Debian-2+deb12u3``).
"""

from __future__ import annotations

import errno
import shlex
import socket
import time

from mkdoctor.checks.mk301_host_resolves import first_hop, resolve
from mkdoctor.fleet import retry_pause
from mkdoctor.model import (Check, Result, failed, needs_target, passed,
                          skipped)
from mkdoctor.proc import record

MAX_BANNER_BYTES = 8192  # RFC 4253: the identification line is at most 255 bytes


def read_banner(sock: socket.socket, end: float) -> tuple[str, str]:
    """Read lines until the ``SSH-`` identification line (or the deadline ``end``).
    Returns (kind, text): ok, not-ssh, no-banner, closed."""
    data = b""
    while len(data) < MAX_BANNER_BYTES:
        for raw in data.split(b"\n")[:-1]:
            line = raw.rstrip(b"\r").decode("ascii", "replace")
            if line.startswith("SSH-"):
                if line.startswith(("SSH-2.0-", "SSH-1.99-")):
                    return "ok", line
                return "not-ssh", f"an old SSH-1 server: {line[:60]}"
            if data.startswith((b"HTTP/", b"<")) or not line.isprintable():
                return "not-ssh", line[:60] or "(binary data)"
        left = end - time.monotonic()
        try:
            if left <= 0:
                raise socket.timeout()
            sock.settimeout(left)
            chunk = sock.recv(1024)
        except socket.timeout:
            chunk = None
        if not chunk:
            if data.strip():  # it talked, but no SSH identification came
                return "not-ssh", data.decode("ascii", "replace").strip().splitlines()[0][:60]
            return ("no-banner", "") if chunk is None else ("closed", "")
        data += chunk
    return "not-ssh", data[:60].decode("ascii", "replace")


# What we say first. The SSH client sends its identification string as soon as it is
# connected, without waiting for the server's (RFC 4253 section 4.2: "both sides MUST
# send an identification string"); OpenSSH does the same. It also makes services that
# wait for the client, such as HTTP, answer at once ("HTTP/1.0 400 Bad request").
CLIENT_ID = b"SSH-2.0-mkdoctor_probe\r\n"


def connect(info: tuple, port: int, left: float, timeout: float
            ) -> tuple[socket.socket | None, tuple[str, str]]:
    """Connect to one getaddrinfo result within ``left`` seconds: (socket, ("ok", ""))
    or (None, (kind, text))."""
    family, socktype, proto, _, addr = info
    sock = socket.socket(family, socktype, proto)
    try:
        sock.settimeout(left)
        sock.connect(addr)
        return sock, ("ok", "")
    except socket.timeout:
        failure = ("timeout", f"no answer from {addr[0]} port {port} within {timeout:g} s")
    except ConnectionRefusedError:
        failure = ("refused", f"{addr[0]} port {port} refused the connection")
    except OSError as exc:
        if exc.errno == errno.EHOSTUNREACH:
            failure = ("no-route", f"no route to host {addr[0]}")
        elif exc.errno == errno.ENETUNREACH:
            failure = ("net-unreachable", f"network unreachable for {addr[0]}")
        else:
            failure = ("error", f"{addr[0]} port {port}: {exc.strerror or exc}")
    sock.close()
    return None, failure


def probe(host: str, port: int, timeout: float) -> tuple[str, str]:
    """Resolve, connect and read the banner within ``timeout`` in all. Returns (kind,
    text): kind is ok, refused, timeout, no-route, net-unreachable, not-ssh, no-banner,
    closed, resolve or error."""
    end = time.monotonic() + timeout
    res = resolve(host, port, timeout)
    if res.kind != "ok":
        return "resolve", res.message
    last = ("error", "no address")
    for info in res.infos:
        record(f"(connect to {info[4][0]} port {port} over TCP and read the SSH banner)")
        left = end - time.monotonic()
        if left <= 0:
            return "timeout", f"no answer from {host} port {port} within {timeout:g} s"
        sock, last = connect(info, port, left, timeout)
        if sock is None:
            continue
        address = info[4][0]
        try:
            sock.sendall(CLIENT_ID)
            kind, text = read_banner(sock, end)
        except OSError as exc:  # reset by the peer
            kind, text = "closed", exc.strerror or str(exc)
        finally:
            sock.close()
        if kind == "no-banner":
            text = f"{address} port {port} accepted the connection but sent nothing within {timeout:g} s"
        elif kind == "not-ssh":
            hint = " (a web server?)" if text.startswith(("HTTP/", "<")) else ""
            text = f"{address} port {port} answered {text!r}{hint}, not an SSH-2.0 greeting"
        elif kind == "closed":
            text = f"{address} port {port} accepted the connection, then closed it" + (
                f": {text}" if text else " without a word")
        return kind, text
    return last


LABELS = {
    "refused": "connection refused",
    "timeout": "timed out (packets dropped?)",
    "no-route": "no route to host",
    "net-unreachable": "network unreachable",
    "not-ssh": "something answers, but it is not SSH",
    "no-banner": "connected, but no SSH banner arrived",
    "closed": "the server closed the connection at once",
    "resolve": "the name does not resolve",
    "error": "cannot connect",
}

FIXES = {
    "refused": "nothing listens on that port: start the SSH server on the remote host "
               "(sudo systemctl enable --now ssh) or check the Port in your ssh config",
    "timeout": "a firewall is dropping the packets, or the host is down: check that the host is "
               "up and that its firewall allows TCP {port} (e.g. sudo ufw allow {port}/tcp)",
    "no-route": "the host is unreachable from here: check the VPN, or the address in your ssh config",
    "net-unreachable": "this computer has no route to that network: connect to the network or VPN "
                       "the host is on",
    "not-ssh": "that port is served by another program: check the port you gave, or the Port "
               "in your ssh config (ssh -G {dest} | grep -i '^port')",
    "no-banner": "the server accepted but did not speak SSH: it may be overloaded (MaxStartups), "
                 "or a proxy sits on port {port}; try again, or ask the administrator",
    "closed": "the server dropped the connection before the SSH greeting: TCP wrappers "
              "(/etc/hosts.allow), fail2ban or MaxStartups may block this address",
    "resolve": "check the host name (ssh -G {dest} | grep -i '^hostname'); see MK301",
    "error": "check the host name and port in your ssh config",
}


def software(banner: str) -> str:
    """The software version of an ``SSH-2.0-softwareversion comments`` line."""
    return banner.split("-", 2)[2] if banner.count("-") >= 2 else banner


def run(ctx) -> Result:
    ep = first_hop(ctx)
    if ep.proxycommand:
        return skipped(
            f"skipped: connected through ProxyCommand ({ep.proxycommand}); MK304 tests that path",
            "nothing to do here: MK304 passwordless-login's result covers this path",
        )
    timeout = ctx.step_timeout()
    where = f"{ep.host} port {ep.port}" + (f" (first hop, {ep.via})" if ep.via else "")
    with ctx.hop_slot(timeout * 4):
        kind, text = probe(ep.host, ep.port, timeout)
    if kind in ("closed", "no-banner") and ctx.fleet.hosts > 1:
        # Many hosts behind one server: a drop before the greeting may be sshd's
        # MaxStartups at work, not this host. One more try after a short pause.
        time.sleep(retry_pause())
        with ctx.hop_slot(timeout * 4):
            kind, text = probe(ep.host, ep.port, ctx.step_timeout())
    facts = {"host": ep.host, "port": ep.port}
    if kind == "ok":
        return passed(f"{where}: {software(text)}", [text], server_banner=text,
                      server_software=software(text), **facts)
    return failed(
        f"{where}: {LABELS[kind]}",
        FIXES[kind].format(port=ep.port, host=ep.host, dest=shlex.quote(ctx.target.host)),
        [text],
        reason=kind, **facts,
    )


CHECK = Check(
    id="MK302",
    name="ssh-port-reachable",
    group="server",
    title="a TCP connection to the SSH port succeeds and an SSH-2.0 banner arrives",
    run=run,
    # needs_if_run: MK301 skips with ProxyCommand, and then this check names the real
    # reason itself; a failed MK301 still blocks it.
    needs_if_run=("MK301",),
    preconditions=(needs_target,),
    fix_hints=(
        ("", "make the SSH port reachable"),
    ),
)
