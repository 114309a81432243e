"""MK403 link-path: the chosen mode's network path works, tested end to end.

The kernel opens two TCP connections to the front end (a TCPIP link name is two ports,
reference.wolfram.com/language/ref/LinkProtocol.html). This check listens on both link
ports on the laptop, as the front end's ``-LinkMode Listen`` does, and has the remote host
connect to them and send a random token (python3, else bash ``/dev/tcp``, else ``nc``):
it passes only when the bytes arrive here.

- tunnel mode: the two reverse forwards ``-R p:127.0.0.1:p`` are opened on the run's
  existing connection (``ssh -O forward``: no second login) and the remote host connects to
  ``127.0.0.1:p``. A refused forward is explained: the port is already taken on the server
  (a stale session — checked with ``ss``/``netstat``), or sshd forbids it
  (``AllowTcpForwarding``, ``PermitListen``, ``DisableForwarding``, a ``restrict`` or
  ``no-port-forwarding`` key option — see MK312/MK305). sshd's own words, "remote port
  forwarding failed for listen port N", are what ``ssh -O forward`` reports.
- direct mode: the remote host connects back to the link address (``--link-host``, else
  MK101's ``link_address``, else the address the server sees us from, the first field of
  ``$SSH_CONNECTION``). No answer means a firewall or NAT drops the inbound connection;
  when the server sees us from an address that is neither the link address (a host name
  is resolved first) nor one of this laptop's own, or MK103 saw NAT, tunnel mode is the
  fix.

Forwards and listeners are always removed afterwards. Facts: ``mode``, ``link_host``
(direct mode), ``seen_from``.
"""

from __future__ import annotations

import ipaddress
import secrets
import shlex
from typing import Optional

from mkdoctor.checks.mk301_host_resolves import is_address, resolve
from mkdoctor.kernel import ensure_login
from mkdoctor.listen import (LinkListener, ListenError, ProbeResult, bind_address, parse_probe,
                             probe_script, same_network_stack, taken_on_server)
from mkdoctor.model import Check, Result, failed, needs_target, passed, skipped
from mkdoctor.netinfo import local


def _probe_timeout(ctx) -> float:
    return max(1.0, ctx.options.timeout)


def _run_probe(ctx, host: str, tokens: dict[int, str]):
    t = _probe_timeout(ctx)
    done = ctx.ssh.run(probe_script(host, tokens, t), ctx.step_timeout(2 * t + ctx.options.timeout + 2))
    seen_from, results = parse_probe(done.stdout)
    return done, seen_from, results


def _arrival_wait(ctx, results: dict) -> float:
    """How long to wait for the tokens once the remote probe has reported: up to 2 s for
    what is still on its way when a port connected, nothing when none did (a dropped or
    refused connection sends nothing: the probe's own timeout was the wait)."""
    if not any(r.result == "ok" for r in results.values()):
        return 0.0
    return ctx.step_timeout(2)


def _listen(ctx, host: str) -> tuple[Optional[LinkListener], Optional[Result]]:
    try:
        return LinkListener(host, ctx.test_ports).open(), None
    except ListenError as err:
        if err.busy:
            return None, skipped(
                f"skipped: cannot listen on link port {err.port} on this laptop: {err.reason}",
                "see MK203 local-ports: end the program that holds it (a stale kernel or "
                "tunnel), or choose other ports with --link-ports P1,P2")
        return None, skipped(f"skipped: cannot listen on {host} port {err.port}: {err.reason}",
                             "check --link-host: it must be an address of this laptop")


def run(ctx) -> Result:
    blocked = ensure_login(ctx)
    if blocked:
        return blocked
    if ctx.mode == "tunnel":
        return tunnel(ctx)
    return direct(ctx)


# --------------------------------------------------------------------------- tunnel mode


def tunnel(ctx) -> Result:
    ports = ctx.test_ports
    if same_network_stack(ctx):
        return skipped(
            "skipped: the remote host is this computer (same network stack): a reverse "
            "forward cannot be told apart from a local connection",
            "run mkdoctor on the laptop that runs the front end, against the remote host")
    # MK404 goes first in tunnel mode: its kernel's link crosses these same forwards, so a
    # kernel that connected proves them; this test runs only when it did not (or MK404 is
    # not in the run), to say which part fails.
    link = ctx.wait_result("MK404")
    if link is not None and link.facts.get("linked"):
        return passed(
            f"reverse forwards {ports[0]} and {ports[1]} carried the kernel's link from the "
            "server to this laptop (MK404 kernel-link)",
            ["not tested again on their own: MK404's kernel connected through them"],
            mode="tunnel", seen_from="", proven_by="MK404")
    listener, problem = _listen(ctx, "127.0.0.1")
    if problem:
        return problem
    assert listener is not None
    opened: list[str] = []
    try:
        # Before forwarding: a port already listened on at the server's 127.0.0.1 wins
        # over our forward (sshd then binds only ::1 for "localhost" and reports success),
        # and the kernel would connect to that stale listener instead of the laptop.
        taken = taken_on_server(ctx, ctx.test_ports)
        if taken:
            return _port_taken(ctx, taken, [f"server: something listens on 127.0.0.1:{p}" for p in taken])
        refused: dict[int, str] = {}
        for p in ports:
            spec = f"{p}:127.0.0.1:{p}"
            done = ctx.ssh.control("forward", "-R", spec, timeout=ctx.step_timeout())
            if done.ok:
                opened.append(spec)
            else:
                lines = (done.stderr or done.stdout).strip().splitlines()
                said = [ln for ln in lines if "port forwarding failed" in ln] or lines
                refused[p] = said[0].strip() if said else "no reason given"
        if refused:
            return _forward_refused(ctx, refused)
        tokens = {p: f"mkd{secrets.token_hex(6)}" for p in ports}
        done, seen_from, results = _run_probe(ctx, "127.0.0.1", tokens)
        arrived = listener.received_all({p: t.encode() for p, t in tokens.items()},
                                        _arrival_wait(ctx, results))
        details = _describe(results, listener, tokens)
        if arrived:
            return passed(
                f"reverse forwards {ports[0]} and {ports[1]} carry data from the server to this laptop",
                details, mode="tunnel", seen_from=seen_from)
        if not results:
            return skipped("skipped: the remote test did not report back",
                           "re-run; see MK304 passwordless-login",
                           [(done.stderr or "").strip()[-300:]])
        if any(r.result == "no-client" for r in results.values()):
            return skipped("skipped: the server has neither python3, bash with timeout, nor nc "
                           "to test the path", "install python3 on the server, or rely on MK404")
        return failed(
            "the forwards were opened but the data did not reach this laptop",
            "check that nothing on this laptop intercepts 127.0.0.1 ports "
            f"{ports[0]},{ports[1]} (MK203), and re-run with -v",
            details, mode="tunnel", seen_from=seen_from, reason="lost")
    finally:
        for spec in opened:
            try:
                ctx.ssh.control("cancel", "-R", spec, timeout=5)
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass
        listener.close()


def _port_taken(ctx, taken: list[int], details: list[str]) -> Result:
    tp = taken[0]
    host = ctx.target.display
    return failed(
        f"port {tp} is already taken on the server (a stale session or kernel?)",
        f"find and end it on the server: ssh {host} {shlex.quote(f'ss -ltnp | grep :{tp}')} "
        "(an old ssh session: kill it), or choose other ports with --link-ports P1,P2",
        details, mode="tunnel", reason="port-taken", ports=taken)


def _forward_refused(ctx, refused: dict[int, str]) -> Result:
    """Tell "the port is taken on the server" from "sshd forbids the forward"."""
    ports = sorted(refused)
    details = [f"port {p}: {msg}" for p, msg in sorted(refused.items())]
    taken = [p for p in taken_on_server(ctx, ctx.test_ports) if p in refused]
    if taken:
        return _port_taken(ctx, taken, details)
    plist = ",".join(str(p) for p in ports)
    mk312 = ctx.wait_result("MK312")  # not waited for before the test: only its words here
    if mk312 is not None and mk312.status.value in ("fail", "warn"):
        details.append(f"MK312 tcp-forwarding: {mk312.summary}")
    return failed(
        f"the server refused the reverse forward of port {plist} (sshd's policy)",
        "allow it in the server's sshd_config: AllowTcpForwarding yes (or remote), "
        f"PermitListen localhost:{ports[0]} localhost:{ports[-1]} (or any), no DisableForwarding; "
        "and remove restrict / no-port-forwarding from your key's line in "
        "~/.ssh/authorized_keys (see MK312, MK305)",
        details, mode="tunnel", reason="forward-refused")


# --------------------------------------------------------------------------- direct mode


def _private(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_private
    except ValueError:
        return False


def direct(ctx) -> Result:
    ports = ctx.test_ports
    host = ctx.options.link_host or ctx.fact("MK101", "link_address")
    source = "--link-host" if ctx.options.link_host else ("MK101's link address" if host else "")
    seen_from = ""
    if not host:
        look = ctx.ssh.run('printf "%s\\n" "$SSH_CONNECTION"', ctx.step_timeout())
        seen_from = (look.stdout.strip().split() or [""])[0]
        host, source = seen_from, "the address the server sees us from ($SSH_CONNECTION)"
    if not host:
        return skipped("skipped: no link address (give --link-host ADDRESS)",
                       "give the laptop's address with --link-host ADDRESS")
    listener, problem = _listen(ctx, bind_address(host))
    if problem:
        return problem
    assert listener is not None
    try:
        tokens = {p: f"mkd{secrets.token_hex(6)}" for p in ports}
        done, seen, results = _run_probe(ctx, host, tokens)
        seen_from = seen or seen_from
        arrived = listener.received_all({p: t.encode() for p, t in tokens.items()},
                                        _arrival_wait(ctx, results))
        details = [f"link address {host} ({source}); the server sees us from {seen_from or '?'}"]
        details += _describe(results, listener, tokens)
        facts = dict(mode="direct", link_host=host, seen_from=seen_from)
        if arrived:
            return passed(f"the server connects back to {host} ports {ports[0]} and {ports[1]}",
                          details, **facts)
        if not results:
            return skipped("skipped: the remote test did not report back",
                           "re-run; see MK304 passwordless-login",
                           [(done.stderr or "").strip()[-300:]])
        if any(r.result == "no-client" for r in results.values()):
            return skipped("skipped: the server has neither python3, bash with timeout, nor nc "
                           "to test the path", "install python3 on the server, or rely on MK404")
        return _direct_failed(ctx, host, seen_from, results, listener, tokens, details, facts)
    finally:
        listener.close()


def _ip(text: str) -> Optional[ipaddress._BaseAddress]:
    """An address in one form (IPv4-mapped IPv6 as IPv4, zone dropped); None if not one."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def _seen_from_elsewhere(ctx, host: str, seen_from: str) -> bool:
    """Does the server see us from an address that is neither the link address (a host
    name resolved here first) nor one of this laptop's own addresses (several interfaces:
    the server may see another of ours)? Only then is it a translated address (NAT)."""
    seen = _ip(seen_from) if seen_from else None
    if seen is None:
        return False
    own = {_ip(host)} if is_address(host) else {
        _ip(a) for a in resolve(host, 0, ctx.step_timeout()).addresses}
    if seen in own:
        return False
    return local(ctx).on_interface(str(seen)) is None


def _direct_failed(ctx, host, seen_from, results, listener, tokens, details, facts) -> Result:
    ports = ctx.test_ports
    bad = [r for p, r in sorted(results.items()) if tokens[p].encode() not in listener.states[p].data]
    first = bad[0] if bad else ProbeResult(ports[0], "?", "error", "")
    translated = _seen_from_elsewhere(ctx, host, seen_from)
    natted = bool(ctx.fact("MK103", "behind_nat")) or translated
    tunnel_fix = ("use tunnel mode (--mode tunnel; mkdoctor setup writes it): it needs nothing "
                  "inbound on the laptop")
    if translated:
        details.append(f"NAT: the server sees this laptop as {seen_from}, not {host} "
                       "(not an address of this laptop)")
    elif natted:
        details.append("MK103 saw NAT")
    p = first.port
    if first.result == "timeout":
        summary = (f"no answer from {host} port {p}: a firewall (this laptop's, or one on the way) "
                   "or NAT drops the inbound connection")
        fw = (f"let the link ports in on this laptop's firewall: sudo ufw allow {ports[0]}:{ports[1]}/tcp, "
              f"or sudo iptables -I INPUT -p tcp -m multiport --dports {ports[0]},{ports[1]} -j ACCEPT "
              "(see MK204)")
        fix = f"{tunnel_fix}; or {fw}" if natted else f"{fw}; or {tunnel_fix}"
    elif first.result in ("no-route", "net-unreachable"):
        kind = "a private address" if _private(host) else "an address"
        summary = f"the server has no route to {host} ({kind} it cannot reach)"
        fix = tunnel_fix if natted or _private(host) else f"check --link-host; or {tunnel_fix}"
        natted = True
    elif first.result == "refused":
        summary = (f"{host} port {p} refused the connection: the server reaches another machine "
                   "(a NAT router) or a firewall rejects it")
        fix = tunnel_fix + (f"; or check --link-host {host}" if not natted else "")
    elif first.result == "ok":
        summary = (f"the server connected to {host} port {p} but the data never reached this "
                   "laptop: that address is not this laptop (a router or another machine answers)")
        fix = f"give this laptop's own address with --link-host, or {tunnel_fix}"
    else:
        summary = f"the server could not connect to {host} port {p}: {first.message or first.result}"
        fix = tunnel_fix
    # The fix is about the laptop's inbound link ports: a check that named the exact rule
    # (MK204) leads it (mkdoctor.firstcause.reconcile).
    topics = ["inbound-link-ports"] if first.result in ("timeout", "refused") else []
    return failed(summary, fix, details, reason=first.result, nat=natted, fix_topics=topics,
                  **facts)


def _describe(results: dict[int, ProbeResult], listener: LinkListener, tokens: dict[int, str]) -> list[str]:
    out = []
    for p, token in tokens.items():
        r = results.get(p)
        got = token.encode() in listener.states[p].data
        remote = f"{r.result} ({r.tool}{': ' + r.message if r.message else ''})" if r else "no report"
        out.append(f"port {p}: server side {remote}; arrived on the laptop: {'yes' if got else 'no'}")
    return out


CHECK = Check(
    id="MK403",
    name="link-path",
    group="kernel",
    title="the chosen mode's network path works (reverse forward, or the remote host connecting back)",
    run=run,
    needs=("MK304",),
    after=("MK101", "MK103", "MK203"),
    preconditions=(needs_target,),
    reads=("mode",),  # ctx.mode: waits for the check that decides it
    fix_hints=(
        ("", "open the link's path (see the fix)"),
        ("forward-refused", "allow TCP forwarding (MK312)"),
        ("port-taken", "free the ports on the server"),
        ("lost", "check the laptop's loopback ports"),
    ),
)
