"""MK101 local-addresses: the laptop's interfaces and addresses, default route and gateway.

In direct mode the remote kernel connects back to one of these addresses, so the link
host must be an address of this laptop that the remote host can reach. VPN interfaces
(tun*, tap*, wg*, utun*, tailscale*, zt*, ppp*...) are named, because a VPN address is
often the one that works. The facts published here (addresses, default interface,
gateway, VPN interfaces, the link address) are read by MK103 and by the direct-mode checks.
"""

from __future__ import annotations

from mkdoctor import netinfo
from mkdoctor.model import Check, Result, failed, passed, warned

NO_NETWORK_FIX = (
    "connect to a network (cable, Wi-Fi or VPN), then list the interfaces: "
    "ip addr (Linux), ifconfig (macOS), ipconfig (Windows)"
)


def run(ctx) -> Result:
    net = netinfo.local(ctx)
    details = [a.describe() for a in net.addresses]
    for name in net.down_interfaces:
        details.append(f"{name}: has an address but is down")
    if not net.usable:
        return failed(
            "no network interface but loopback" if not net.addresses
            else "only IPv6 link-local addresses: no usable network",
            NO_NETWORK_FIX,
            details,
            **net.facts(),
            link_address=None,
        )

    if net.default_interface:
        via = f"via {net.gateway}" if net.gateway else "without a gateway (point-to-point)"
        route = f"default route {via} on {net.default_interface}"
    elif net.default_interface6:
        route = f"IPv6 default route via {net.gateway6} on {net.default_interface6}"
    else:
        route = "no default route"
        details.append("no default route: only the networks of the interfaces above are "
                       "reachable (enough when the remote host is on one of them)")
    if net.default_interface6 and net.default_interface:
        details.append(f"IPv6 default route via {net.gateway6} on {net.default_interface6}")
    vpns = net.vpn_interfaces
    shown = ", ".join(a.cidr + f" ({a.interface})" for a in net.usable if a.kind != "link-local")
    summary = f"{shown or 'link-local addresses only'}; {route}"
    if vpns:
        summary += "; VPN: " + ", ".join(vpns)

    link = ctx.options.link_host or net.link_address()
    facts = dict(net.facts(), link_address=link)
    given = ctx.options.link_host
    if given:
        details.append(f"direct mode: the kernel connects back to {given} (--link-host)")
    elif link:
        details.append(f"direct mode: the kernel would connect back to {link} (the address of the "
                       "route to the internet; --link-host ADDRESS chooses another)")

    if given and net.on_interface(given) is None:
        return warned(
            f"--link-host {given} is not an address of this laptop",
            "give one of this laptop's addresses (--link-host "
            f"{net.link_address() or 'ADDRESS'}), or forward the two link ports on the router "
            f"at {given} to this laptop",
            details, **facts,
        )
    if all(a.kind == "link-local" for a in net.usable):
        return warned(
            "only link-local addresses: the network gave this laptop no address (DHCP failed?)",
            "reconnect to the network, or renew the lease: sudo dhclient -r && sudo dhclient "
            "(Linux), sudo ipconfig set en0 DHCP (macOS), ipconfig /renew (Windows)",
            details, **facts,
        )
    return passed(summary, details, **facts)


CHECK = Check(
    id="MK101",
    name="local-addresses",
    group="network",
    title="the laptop's interfaces and addresses, default route and gateway; VPN interfaces named",
    run=run,
    needs=(),
    after=(),
    fix_hints=(
        ("", "connect to a network"),
    ),
)
