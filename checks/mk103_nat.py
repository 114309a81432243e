"""MK103 nat: is the laptop behind NAT (or carrier-grade NAT)? Which mode fits?

In direct mode the remote kernel opens TCP connections back to two ports on the laptop.
Behind NAT nothing outside can open a connection to the laptop unless the router forwards
those ports; behind carrier-grade NAT (RFC 6598, 100.64.0.0/10) the provider's NAT sits
in front of the home router, and no port forwarding can help. Tunnel mode (``ssh -R``)
needs nothing inbound and works in every case, so it is recommended behind NAT.

The verdict compares the public address the what-is-my-IP service saw (MK102) with the
laptop's interface addresses (MK101): the same address on an interface means no NAT. A
100.64.0.0/10 address on a VPN interface (tailscale0...) is the VPN's, not CGNAT. When
MK102 was skipped (offline), the verdict comes from the interfaces alone and says so.
The summary line carries the key advice, since the default report shows no details:
behind carrier-grade NAT port forwarding cannot work; a VPN address may serve for direct
mode; with no NAT, a home public address is often dynamic.

Facts: ``recommended_mode`` (it decides the mode: ``Context.mode``), ``behind_nat``, ``cgnat``,
``reachable_from_internet``, ``partial``, ``vpn_addresses``.
"""

from __future__ import annotations

from mkdoctor import netinfo
from mkdoctor.model import Check, Result, failed, passed, skipped, warned


def run(ctx) -> Result:
    net = netinfo.local(ctx)
    public = ctx.fact("MK102", "public_address")
    verdict = netinfo.nat_verdict(net, public)
    facts = verdict.facts()
    details = list(verdict.details)
    if verdict.partial:
        mk102 = ctx.result("MK102")
        why = f"MK102: {mk102.summary}" if mk102 is not None else "MK102 was not run"
        details.insert(0, f"partial verdict: the public address is unknown ({why}); "
                          "judged from the interfaces alone")
    if not net.usable:
        return skipped("skipped: no network interface but loopback (see MK101)",
                       "connect to a network (see MK101's fix), then re-run", details=details, **facts)

    summary = "; ".join([verdict.summary, f"recommended mode: {verdict.recommended_mode}",
                         *verdict.advice])
    vpn_advice = [a for a in verdict.advice if a.startswith("the VPN address")]
    requested = ctx.options.mode
    link = ctx.options.link_host
    on_link = net.on_interface(link) if link else None
    via_vpn = on_link is not None and on_link.vpn
    if requested == "direct" and not via_vpn:
        if verdict.cgnat:
            return failed(
                "; ".join(["direct mode cannot work behind carrier-grade NAT: port forwarding "
                           "cannot make this laptop reachable from outside", *vpn_advice]),
                "use tunnel mode: --mode tunnel" + (
                    f" (or, if the remote host is on your VPN, --link-host {verdict.vpn_addresses[0]})"
                    if verdict.vpn_addresses else ""),
                details, **facts,
            )
        if verdict.behind_nat:
            details.append("direct mode still works when the remote host is on the same local "
                           "network as this laptop (give --link-host with the LAN address)")
            return warned(
                "; ".join([f"direct mode requested, but {verdict.summary}", *vpn_advice]),
                "use tunnel mode (--mode tunnel), or forward the two link ports "
                f"{ctx.link_ports[0]} and {ctx.link_ports[1]} (TCP) on your router to "
                f"{ctx.fact('MK101', 'link_address') or net.link_address() or 'this laptop'}",
                details, **facts,
            )
    return passed(summary, details, **facts)


CHECK = Check(
    id="MK103",
    name="nat",
    group="network",
    title="whether the laptop is behind NAT (or carrier-grade NAT); recommends the mode",
    run=run,
    needs=(),
    after=("MK101", "MK102"),
    decides=(("mode", "recommended_mode"),),  # Context.mode without --mode
    fix_hints=(
        ("", "use --mode tunnel"),
    ),
)
