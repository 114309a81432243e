"""Step 8: the link ports (MK203; in tunnel mode the server must be able to listen on them)."""

from __future__ import annotations

import random
import socket
from typing import TYPE_CHECKING, Optional

from mkdoctor.options import Options, Target, UsageError, parse_link_ports
from mkdoctor.wizard.flow import StepFailed

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow

DYNAMIC_PORTS = (49152, 65535)  # IANA dynamic/private range (RFC 6335)


def port_free(port: int, address: str) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
            s.bind((address, port))
        return True
    except OSError:
        return False


def pick_ports(address: str, rng: Optional[random.Random] = None) -> tuple[int, int]:
    """Two consecutive free ports from the dynamic range."""
    rng = rng or random.Random()
    for _ in range(200):
        p = rng.randrange(DYNAMIC_PORTS[0], DYNAMIC_PORTS[1] - 1)
        if port_free(p, address) and port_free(p + 1, address):
            return p, p + 1
    raise StepFailed("no two free ports in 49152-65535; give --link-ports P1,P2")


def run(f: Flow) -> None:
    st = f.state
    f.step("The link ports (MK203)")
    a, prev = f.args, st.previous
    address = "0.0.0.0" if st.mode == "direct" else "127.0.0.1"
    explicit = bool(a.link_ports)
    for attempt in range(5):
        if explicit:
            ports = parse_link_ports(a.link_ports)
        elif attempt == 0 and prev:
            ports = (int(prev.link_ports[0]), int(prev.link_ports[1]))
        else:
            ports = pick_ports(address)
        if f.ask.interactive and not explicit:
            def valid(text: str) -> Optional[str]:
                try:
                    parse_link_ports(text)
                except UsageError as exc:
                    return str(exc)
                return None

            ports = parse_link_ports(f.ask.text("Link ports (two free ports, P1,P2):",
                                                   f"{ports[0]},{ports[1]}", "--link-ports", valid))
        opts = f.remote_options(link_ports=ports, link_ports_given=True)
        res = f.run_checks(["MK203"], opts, None)
        problem = res["MK203"].status.value in ("fail", "error")
        if not problem and st.mode == "tunnel":
            problem = not remote_can_bind(f, opts, ports)
        if not problem:
            st.ports = ports
            return
        if explicit:
            raise StepFailed(f"the link ports {ports[0]},{ports[1]} cannot be used; "
                             "choose others with --link-ports P1,P2")
    raise StepFailed("no usable pair of link ports after 5 tries; give --link-ports P1,P2")


def remote_can_bind(f: Flow, opts: Options, ports: tuple[int, int]) -> bool:
    """Tunnel mode: the server can listen on both ports (a reverse forward each)."""
    st = f.state
    from mkdoctor.context import Context

    target = Target(st.alias)
    ctx = Context(opts, target, session=f.session_for(opts, target))
    try:
        if not ctx.ssh.login(ctx.step_timeout(opts.timeout * 2 + 2)).ok:
            return True  # MK304 passed a moment ago; MK403 will tell
        for p in ports:
            spec = f"{p}:127.0.0.1:{p}"
            done = ctx.ssh.control("forward", "-R", spec, timeout=ctx.step_timeout())
            if done.returncode != 0:
                f.say(f"  the remote host cannot listen on port {p}: "
                         f"{(done.stderr or done.stdout).strip()}")
                return False
            ctx.ssh.control("cancel", "-R", spec, timeout=ctx.step_timeout())
        f.say(f"  the remote host can listen on {ports[0]} and {ports[1]}")
        return True
    finally:
        ctx.close()
