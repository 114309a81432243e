"""The laptop's network, as MK101 and MK103 see it: interfaces, addresses, routes.

Gathering (:func:`gather`) reads the interfaces and addresses with psutil, the default
gateway with netifaces, and asks the kernel's routing table which source address it
would use for the internet (:func:`route_source`: ``connect()`` on a UDP socket only
looks the route up, it sends no packet). Everything else here is pure: address
classification, VPN-name detection, the choice of the link address, and the NAT verdict
(:func:`nat_verdict`), so that they can be tested without a network.

"Public" in the NAT verdict means *as seen from the what-is-my-IP service*: an address of
one of the laptop's interfaces that equals the address the service saw needs no NAT to be
reached. That is the real test of NAT, and it also holds for test networks numbered from
the RFC 5737 documentation ranges, which Python's ``ipaddress`` counts as not global.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# Shared address space for carrier-grade NAT (RFC 6598). Tailscale numbers its VPN from
# the same block, which is why an address here on a VPN interface is not CGNAT.
CGNAT = ipaddress.ip_network("100.64.0.0/10")
RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
ULA = ipaddress.ip_network("fc00::/7")  # RFC 4193 unique local IPv6 addresses
DOCUMENTATION = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)  # RFC 5737 and RFC 3849

# Global addresses whose route the kernel is asked for (no packet is sent): well-known
# anycast resolvers, chosen only because they are certainly outside any local network.
ROUTE_PROBES = {4: "1.1.1.1", 6: "2606:4700:4700::1111"}

# Interface names that VPN software gives its interfaces: OpenVPN/generic tun and tap,
# WireGuard (wg0, wg-home), macOS utun, Tailscale, ZeroTier (zt + network hash), PPP/PPTP,
# Cisco AnyConnect (cscotun0), GlobalProtect (gpd0), NordVPN (nordlynx), strongSwan (ipsec0).
# ``tunl0`` (the kernel's IP-in-IP fallback device) is not a VPN.
VPN_NAME = re.compile(
    r"^(?:tun(?:\d+|[-_.].*)|tap(?:\d+|[-_.].*)|wg.*|utun\d*|tailscale.*|zt.+|ppp\d*"
    r"|cscotun\d*|gpd\d*|nordlynx.*|ipsec\d*)$",
    re.IGNORECASE,
)

KIND_TEXT = {
    "public": "public",
    "private": "private (RFC 1918)",
    "unique-local": "private (IPv6 unique local)",
    "cgnat": "shared/carrier-grade NAT range (100.64.0.0/10)",
    "vpn-cgnat": "VPN address (100.64.0.0/10, e.g. Tailscale)",
    "link-local": "link-local (IPv4: no DHCP lease)",
    "link-local6": "link-local (this link only)",
    "documentation": "documentation/test range (RFC 5737)",
    "loopback": "loopback",
    "reserved": "reserved/special range",
}


def is_vpn_interface(name: str) -> bool:
    """True when ``name`` looks like a VPN's interface (tun0, wg0, utun3, tailscale0...)."""
    return bool(VPN_NAME.match(name or ""))


def parse_ip(text: str) -> Optional[IPAddress]:
    """An IP address, or None. Accepts IPv6 with a zone (``fe80::1%eth0``)."""
    try:
        return ipaddress.ip_address(str(text).strip().split("%", 1)[0])
    except ValueError:
        return None


def classify(address: str, interface: str = "") -> str:
    """The kind of an address: public, private, unique-local, cgnat, vpn-cgnat,
    link-local, documentation, loopback or reserved (see ``KIND_TEXT``).

    An address in 100.64.0.0/10 on a VPN interface is the VPN's (``vpn-cgnat``), not a
    sign of carrier-grade NAT.
    """
    ip = parse_ip(address)
    if ip is None:
        raise ValueError(f"not an IP address: {address!r}")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return classify(str(ip.ipv4_mapped), interface)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip in CGNAT:
        return "vpn-cgnat" if is_vpn_interface(interface) else "cgnat"
    if any(ip in net for net in RFC1918):
        return "private"
    if ip in ULA:
        return "unique-local"
    if any(ip in net for net in DOCUMENTATION):
        return "documentation"
    if ip.is_global:
        return "public"
    return "reserved"


def prefixlen(netmask: Optional[str]) -> Optional[int]:
    """The prefix length of a dotted or IPv6 netmask (``255.255.255.0`` -> 24)."""
    ip = parse_ip(netmask) if netmask else None
    if ip is None:
        return None
    return bin(int(ip)).count("1")


@dataclass(frozen=True)
class Address:
    interface: str
    address: str
    family: int  # 4 or 6
    prefixlen: Optional[int]
    kind: str
    vpn: bool

    @property
    def cidr(self) -> str:
        return self.address if self.prefixlen is None else f"{self.address}/{self.prefixlen}"

    def describe(self) -> str:
        kind = "link-local6" if self.kind == "link-local" and self.family == 6 else self.kind
        return f"{self.interface}: {self.cidr} {KIND_TEXT.get(kind, kind)}" + (
            " [VPN]" if self.vpn else ""
        )


@dataclass
class LocalNetwork:
    """What the laptop's network looks like (loopback left out)."""

    addresses: list[Address] = field(default_factory=list)
    default_interface: Optional[str] = None
    gateway: Optional[str] = None
    default_interface6: Optional[str] = None
    gateway6: Optional[str] = None
    route_source: Optional[str] = None  # source address of the route to the internet
    down_interfaces: list[str] = field(default_factory=list)  # have addresses, but down

    @property
    def interfaces(self) -> list[str]:
        return list(dict.fromkeys(a.interface for a in self.addresses))

    @property
    def vpn_interfaces(self) -> list[str]:
        return list(dict.fromkeys(a.interface for a in self.addresses if a.vpn))

    @property
    def has_default_route(self) -> bool:
        return bool(self.default_interface or self.default_interface6 or self.route_source)

    @property
    def usable(self) -> list[Address]:
        """Addresses another host could use: not IPv6 link-local."""
        return [a for a in self.addresses if not (a.kind == "link-local" and a.family == 6)]

    def on_interface(self, address: str) -> Optional[Address]:
        ip = parse_ip(address)
        for a in self.addresses:
            if ip is not None and parse_ip(a.address) == ip:
                return a
        return None

    def link_address(self) -> Optional[str]:
        """The address a remote kernel would connect back to in direct mode by default:
        the source address of the route to the internet, else the default interface's
        first IPv4 address (the one in the gateway's network first), else any usable one."""
        if self.route_source:
            return self.route_source
        on_default = [a for a in self.usable if a.interface == self.default_interface]
        gw = parse_ip(self.gateway) if self.gateway else None
        for a in on_default:
            if gw is not None and a.family == 4 and a.prefixlen is not None:
                if gw in ipaddress.ip_network(f"{a.address}/{a.prefixlen}", strict=False):
                    return a.address
        for group in (on_default, self.usable):
            for fam in (4, 6):
                for a in group:
                    if a.family == fam and a.kind != "link-local":
                        return a.address
        return self.usable[0].address if self.usable else None

    def facts(self) -> dict[str, Any]:
        return {
            "addresses": [asdict(a) for a in self.addresses],
            "default_interface": self.default_interface,
            "gateway": self.gateway,
            "default_interface6": self.default_interface6,
            "gateway6": self.gateway6,
            "vpn_interfaces": self.vpn_interfaces,
            "has_default_route": self.has_default_route,
        }


def build(
    if_addrs: Mapping[str, Iterable[tuple[int, str, Optional[str]]]],
    if_up: Mapping[str, bool],
    gateways: Mapping[Any, Any],
    route_src: Optional[str] = None,
) -> LocalNetwork:
    """Assemble a :class:`LocalNetwork` from raw data (pure).

    ``if_addrs``: interface -> (family, address, netmask) with family ``socket.AF_INET`` or
    ``AF_INET6`` (others are ignored); ``if_up``: interface -> up; ``gateways``: the shape of
    ``netifaces.gateways()`` (``{"default": {AF_INET: (gw, iface)}}``); ``route_src``: the
    kernel's source address for the internet, if any.
    """
    net = LocalNetwork()
    for name in sorted(if_addrs):
        entries = []
        for family, address, netmask in if_addrs[name]:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = parse_ip(address)
            if ip is None or ip.is_loopback or ip.is_unspecified:
                continue
            entries.append(Address(
                interface=name,
                address=str(ip),
                family=ip.version,
                prefixlen=prefixlen(netmask),
                kind=classify(str(ip), name),
                vpn=is_vpn_interface(name),
            ))
        if not entries:
            continue
        if if_up.get(name, True):
            # IPv4 first, then IPv6; global before link-local, each in the OS's order.
            entries.sort(key=lambda a: (a.family, a.kind == "link-local"))
            net.addresses.extend(entries)
        else:
            net.down_interfaces.append(name)
    default = (gateways or {}).get("default") or {}
    if socket.AF_INET in default:
        net.gateway, net.default_interface = default[socket.AF_INET][:2]
    if socket.AF_INET6 in default:
        net.gateway6, net.default_interface6 = default[socket.AF_INET6][:2]
    if route_src and parse_ip(route_src) is not None:
        net.route_source = str(parse_ip(route_src))
        if net.default_interface is None:
            # A default route without a gateway (``default dev wg0``, point-to-point):
            # netifaces does not list it; the interface holding the source address is it.
            owner = net.on_interface(net.route_source)
            if owner is not None and owner.family == 4:
                net.default_interface = owner.interface
    return net


def route_source(destination: str) -> Optional[str]:
    """The source address the kernel would use to reach ``destination``, or None when
    there is no route. ``connect()`` on a UDP socket only looks the route up: no packet
    leaves the laptop."""
    ip = parse_ip(destination)
    if ip is None:
        return None
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(ip), 9))  # port 9 (discard); nothing is sent
            source = sock.getsockname()[0]
    except OSError:
        return None
    source_ip = parse_ip(source)
    if source_ip is None or source_ip.is_unspecified:
        return None
    return str(source_ip)


def has_route(destinations: Sequence[str] = ()) -> bool:
    """True if the kernel has a route to the internet or to any of ``destinations``
    (IP literals; host names are ignored)."""
    targets = list(ROUTE_PROBES.values()) + [d for d in destinations if parse_ip(d)]
    return any(route_source(t) is not None for t in targets)


def local(ctx: Any) -> LocalNetwork:
    """The laptop's network, read once per run (MK101 and MK103 share it)."""
    return ctx.cached("netinfo.local", gather)


def gather() -> LocalNetwork:
    """Read the laptop's interfaces, addresses and default routes (psutil, netifaces)."""
    import psutil

    if_addrs = {
        name: [(int(a.family), a.address, a.netmask) for a in addrs]
        for name, addrs in psutil.net_if_addrs().items()
    }
    if_up = {name: stats.isup for name, stats in psutil.net_if_stats().items()}
    try:
        import netifaces

        gateways = netifaces.gateways()
    except (ImportError, OSError):  # the route lookup below still finds the interface
        gateways = {}
    return build(if_addrs, if_up, gateways, route_source(ROUTE_PROBES[4]))


# --- the NAT verdict ---------------------------------------------------------------------


@dataclass
class NatVerdict:
    behind_nat: Optional[bool]  # None: cannot tell
    cgnat: bool
    reachable_from_internet: bool
    recommended_mode: str
    partial: bool  # decided without the public address
    summary: str
    details: list[str] = field(default_factory=list)
    vpn_addresses: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)  # the key sentences, for the summary line

    def facts(self) -> dict[str, Any]:
        return {
            "behind_nat": self.behind_nat,
            "cgnat": self.cgnat,
            "reachable_from_internet": self.reachable_from_internet,
            "recommended_mode": self.recommended_mode,
            "partial": self.partial,
            "vpn_addresses": self.vpn_addresses,
        }


def nat_verdict(net: LocalNetwork, public: Optional[str]) -> NatVerdict:
    """Decide whether the laptop is behind NAT (pure).

    - the public address (as the what-is-my-IP service saw it) is on a local interface:
      no NAT, direct mode can work;
    - it differs: behind NAT, tunnel mode; carrier-grade NAT when a (non-VPN) interface
      address or the gateway is in 100.64.0.0/10;
    - no public address (offline): judged from the interfaces alone, ``partial``.
    """
    plain = [a for a in net.usable if not a.vpn]
    vpn = [a for a in net.usable if a.vpn and a.kind != "link-local"]
    gw_kind = None
    if net.gateway and parse_ip(net.gateway) is not None:
        gw_kind = classify(net.gateway, net.default_interface or "")
    cgnat_addrs = [a for a in plain if a.kind == "cgnat"]
    cgnat = bool(cgnat_addrs) or gw_kind == "cgnat"
    details: list[str] = []

    public_ip = parse_ip(public) if public else None
    partial = public_ip is None
    if public_ip is not None:
        match = net.on_interface(str(public_ip))
        if match is not None:
            behind, reachable = False, True
            summary = (f"no NAT: the public address {public_ip} is on {match.interface}, "
                       "reachable directly")
            cgnat = False  # the service saw this very interface address
        else:
            behind, reachable = True, False
            kind = "carrier-grade NAT" if cgnat else "NAT"
            summary = f"behind {kind}: the internet sees {public_ip}, not an address of this laptop"
            if vpn:
                details.append("the traffic may leave through the VPN; its exit address is "
                               "what the service saw")
    else:
        globals_ = [a for a in plain if a.kind == "public"]
        if globals_:
            behind, reachable = False, True
            summary = (f"probably no NAT: the public address {globals_[0].address} is on "
                       f"{globals_[0].interface} (partial verdict)")
        elif cgnat:
            behind, reachable = True, False
            summary = "behind carrier-grade NAT (partial verdict)"
        elif plain:
            behind, reachable = True, False
            summary = "probably behind NAT: no public address on any interface (partial verdict)"
        else:
            behind, reachable = None, False
            summary = "cannot tell: no usable address outside a VPN"
    if cgnat:
        if cgnat_addrs:
            details.append("carrier-grade NAT address: "
                           + ", ".join(a.describe() for a in cgnat_addrs))
        if gw_kind == "cgnat":
            details.append(f"the gateway {net.gateway} is in 100.64.0.0/10 (carrier-grade NAT)")
        details.append("carrier-grade NAT: the provider shares one public address among many "
                       "customers; port forwarding on your router cannot make this laptop "
                       "reachable from outside")
    advice: list[str] = []
    if cgnat and behind:
        advice.append("port forwarding on your router cannot work")
    vpn_addresses = [a.address for a in vpn]
    for a in vpn:
        details.append(f"VPN interface {a.interface} has {a.address}: if the remote host is on "
                       f"the same VPN, direct mode can use it (--mode direct --link-host {a.address})")
    if vpn and behind is not False:
        advice.append(f"the VPN address {vpn[0].address} ({vpn[0].interface}) may serve for "
                      "direct mode if the remote host is on that VPN")
    if behind is False:
        details.append("home and mobile public addresses are often dynamic: a saved direct-mode "
                       "configuration breaks when the address changes")
        advice.append("but home public addresses are often dynamic: a saved direct setup breaks "
                      "when the address changes")
    mode = "direct" if behind is False else "tunnel"
    return NatVerdict(behind, cgnat, reachable, mode, partial, summary, details, vpn_addresses,
                      advice)
