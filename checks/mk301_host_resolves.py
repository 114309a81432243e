"""MK301 host-resolves: the name ssh will connect to resolves to an address.

The name is what ``ssh -G`` says (``HostName`` of the Host block, not the alias the user
typed); with ``ProxyJump`` it is the first jump host, because that is the only name this
computer has to resolve (the jump host resolves the next one). With ``ProxyCommand`` the
command connects, not ssh, so there is nothing for us to resolve.

``getaddrinfo`` has no timeout of its own (a dead DNS server makes it hang for the
resolver's full retry schedule), so it runs in a worker thread and we wait for it at
most the step timeout.
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import threading
from dataclasses import dataclass, field

from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped
from mkdoctor.proc import record
from mkdoctor.openssh.session import Endpoint, RemoteUnavailable, parse_jump


@dataclass
class Resolution:
    """The outcome of a name lookup: ``kind`` is ok, no-such-name, dns-failure, timeout
    or error; ``infos`` are getaddrinfo's tuples when ok."""

    kind: str
    message: str = ""
    infos: list[tuple] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        seen: list[str] = []
        for info in self.infos:
            addr = info[4][0]
            if addr not in seen:
                seen.append(addr)
        return seen


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def resolve(host: str, port: int, timeout: float) -> Resolution:
    """``getaddrinfo(host, port)`` for TCP, waiting at most ``timeout`` seconds. A lookup
    that does not finish in time is left to end on its own (a daemon thread)."""
    record(f"(getaddrinfo {host} port {port}, at most {timeout:g} s)")
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"getaddrinfo {host}", daemon=True)
    worker.start()
    worker.join(max(timeout, 0.01))
    if worker.is_alive():
        return Resolution("timeout", f"no answer from the DNS resolver within {timeout:g} s")
    error = box.get("error")
    if error is None:
        return Resolution("ok", infos=list(box.get("infos") or []))
    if isinstance(error, socket.gaierror):
        no_name = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
        if error.errno in no_name:
            return Resolution("no-such-name", f"{host}: {error.strerror}")
        if error.errno == socket.EAI_AGAIN:
            return Resolution("dns-failure", f"{host}: {error.strerror}")
        return Resolution("error", f"{host}: {error.strerror or error}")
    return Resolution("error", f"{host}: {error}")


def first_hop(ctx) -> Endpoint:
    """Where ssh connects first (``ssh -G``, and the jump host's own ``ssh -G`` with
    ProxyJump), worked out once per run for MK301-MK303."""
    return ctx.endpoint()


def run(ctx) -> Result:
    dest = ctx.target.display
    try:
        ep = first_hop(ctx)
    except RemoteUnavailable as exc:
        return failed(
            "ssh cannot read its configuration for this host",
            f"fix the ssh configuration: `ssh -G {dest}` shows the error",
            [str(exc)],
        )
    if ep.proxycommand:
        return skipped(
            f"skipped: ssh connects through ProxyCommand ({ep.proxycommand}); the command "
            "resolves and connects, MK304 tests that path",
            "nothing to do here: MK304 passwordless-login's result covers this path",
        )
    what = f"{ep.host} (first hop, {ep.via})" if ep.via else ep.host
    facts = {"host": ep.host, "port": ep.port, "via": ep.via or ""}
    if is_address(ep.host):
        return passed(f"{what} is an IP address: nothing to resolve",
                      addresses=[ep.host], **facts)
    timeout = ctx.step_timeout()
    res = resolve(ep.host, ep.port, timeout)
    details = [f"ssh -G {dest}: hostname {ep.final_host}"]
    if ep.via:
        details.append(f"{ep.via}: this computer resolves only the jump host {ep.host}; "
                       f"the jump host resolves {ep.final_host}")
    if res.kind == "ok":
        return passed(f"{what} resolves to {', '.join(res.addresses)}", details,
                      addresses=res.addresses, **facts)
    details.append(res.message)
    if res.kind == "no-such-name":
        if ep.via:
            jname = parse_jump(ep.via.split(" ", 1)[1])[0]
            where = (f"the first jump host of `{ep.via}` for `{dest}`, or the HostName of its "
                     f"own Host block: ssh -G {shlex.quote(jname)} | grep -i '^hostname'")
        else:
            where = (f"the HostName of `{dest}` in your ssh config: "
                     f"ssh -G {dest} | grep -i '^hostname'")
        return failed(
            f"{ep.host} does not resolve: no such name",
            f"check the spelling of {ep.host} ({where}); a name known only inside a VPN or "
            "LAN needs that VPN connected, or an /etc/hosts entry",
            details, reason=res.kind, **facts,
        )
    if res.kind in ("dns-failure", "timeout"):
        return failed(
            f"{ep.host} could not be resolved: the DNS server did not answer"
            + (f" within {timeout:g} s" if res.kind == "timeout" else ""),
            "check the network connection and DNS servers (resolvectl status, or "
            "/etc/resolv.conf); or put the address in HostName of your ssh config",
            details, reason=res.kind, **facts,
        )
    return failed(f"{ep.host} could not be resolved", f"check the host name {ep.host}",
                  details, reason=res.kind, **facts)


CHECK = Check(
    id="MK301",
    name="host-resolves",
    group="server",
    title="the host name (after ssh -G, through ProxyJump when set) resolves",
    run=run,
    needs=("MK201",),
    preconditions=(needs_target,),
    fix_hints=(
        ("", "correct the host name"),
    ),
)
