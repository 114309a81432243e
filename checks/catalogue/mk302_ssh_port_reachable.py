"""MK302 ssh-port-reachable: a TCP connection to the SSH port, and an ``SSH-2.0-`` banner.

Refused (nothing listens), timed out (a firewall drops the packets), no route, network
unreachable, and "something answers but it is not SSH" are told apart, because each has
a different fix. With ProxyJump the first hop (the jump host) is what we can reach.
"""

from __future__ import annotations

import errno
import socket
import time

from checks.model import Check, Result, failed, needs_target, passed, skipped
from checks.ssh import endpoint


def probe(host: str, port: int, timeout: float) -> tuple[str, str]:
    """Connect and read the banner within ``timeout`` in all. Returns (kind, text):
    kind is ok, refused, timeout, no-route, net-unreachable, not-ssh, resolve, error."""
    end = time.monotonic() + timeout
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return "resolve", str(exc)
    last = ("error", "no address")
    for family, socktype, proto, _, addr in infos:
        left = end - time.monotonic()
        if left <= 0:
            return "timeout", f"no answer from {host} port {port} within {timeout:g} s"
        sock = socket.socket(family, socktype, proto)
        sock.settimeout(left)
        try:
            sock.connect(addr)
            data = b""
            while b"\n" not in data and len(data) < 1024:
                sock.settimeout(max(0.01, end - time.monotonic()))
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            line = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
            if line.startswith(("SSH-2.0-", "SSH-1.99-")):
                return "ok", line
            shown = line[:60] or "(closed the connection without a word)"
            return "not-ssh", shown
        except socket.timeout:
            last = ("timeout", f"no answer from {addr[0]} port {port} within {timeout:g} s")
        except ConnectionRefusedError:
            last = ("refused", f"{addr[0]} port {port} refused the connection")
        except OSError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                last = ("no-route", f"no route to host {addr[0]}")
            elif exc.errno == errno.ENETUNREACH:
                last = ("net-unreachable", f"network unreachable for {addr[0]}")
            else:
                last = ("error", f"{addr[0]} port {port}: {exc.strerror or exc}")
        finally:
            sock.close()
    return last


FIXES = {
    "refused": "nothing listens on that port: start the SSH server on the remote host "
               "(sudo systemctl enable --now ssh) or check the Port in your ssh config",
    "timeout": "a firewall is dropping the packets, or the host is down: check that the host is "
               "up and that its firewall allows TCP {port} (e.g. sudo ufw allow {port}/tcp)",
    "no-route": "the host is unreachable from here: check the VPN, or the address in your ssh config",
    "net-unreachable": "this computer has no route to that network: connect to the network or VPN "
                       "the host is on",
    "not-ssh": "that port is served by another program: check the Port in your ssh config",
    "resolve": "check the host name (ssh -G {host} | grep -i ^hostname)",
    "error": "check the host name and port in your ssh config",
}


def run(ctx) -> Result:
    ep = endpoint(ctx.ssh, ctx.step_timeout())
    if ep.proxycommand:
        return skipped(
            f"skipped: connected through ProxyCommand ({ep.proxycommand}); MK304 tests that path",
        )
    timeout = ctx.step_timeout()
    where = f"{ep.host} port {ep.port}" + (f" (first hop, {ep.via})" if ep.via else "")
    kind, text = probe(ep.host, ep.port, timeout)
    if kind == "ok":
        return passed(f"{where}: {text}", server_banner=text, host=ep.host, port=ep.port)
    labels = {
        "refused": "connection refused",
        "timeout": "timed out (packets dropped?)",
        "no-route": "no route to host",
        "net-unreachable": "network unreachable",
        "not-ssh": "something answers, but it is not SSH",
        "resolve": "the name does not resolve",
        "error": "cannot connect",
    }
    return failed(
        f"{where}: {labels[kind]}",
        FIXES[kind].format(port=ep.port, host=ep.host),
        [text],
        reason=kind,
    )


CHECK = Check(
    id="MK302",
    name="ssh-port-reachable",
    group="server",
    title="a TCP connection to the SSH port succeeds and an SSH-2.0 banner arrives",
    run=run,
    needs=("MK301",),
    preconditions=(needs_target,),
)
