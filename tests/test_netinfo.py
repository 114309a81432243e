"""Unit tests of mkdoctor.netinfo: address classification, VPN names, the NAT verdict."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, strategies as st

from mkdoctor import netinfo
from mkdoctor.netinfo import build, classify, is_vpn_interface, nat_verdict, prefixlen

V4, V6 = socket.AF_INET, socket.AF_INET6


# ---------------------------------------------------------------- VPN interface names


@pytest.mark.parametrize("name", [
    "tun0", "tun12", "tap0", "wg0", "wg-home", "utun3", "tailscale0", "ztks57vmcx",
    "ppp0", "cscotun0", "gpd0", "nordlynx", "TUN0",
])
def test_vpn_names(name: str) -> None:
    assert is_vpn_interface(name)


@pytest.mark.parametrize("name", [
    "eth0", "wlan0", "enp0s31f6", "wlp2s0", "en0", "lo", "docker0", "br-1a2b", "veth12ab",
    "tunl0", "tapestry", "virbr0", "zt", "", "Ethernet", "Wi-Fi",
])
def test_not_vpn_names(name: str) -> None:
    assert not is_vpn_interface(name)


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("address, interface, kind", [
    ("10.1.2.3", "eth0", "private"),
    ("172.16.0.1", "eth0", "private"),
    ("172.31.255.254", "eth0", "private"),
    ("172.32.0.1", "eth0", "public"),
    ("192.168.1.20", "wlan0", "private"),
    ("100.64.0.1", "eth0", "cgnat"),
    ("100.127.255.254", "wwan0", "cgnat"),
    ("100.63.255.255", "eth0", "public"),
    ("100.128.0.1", "eth0", "public"),
    ("100.101.102.103", "tailscale0", "vpn-cgnat"),
    ("100.101.102.103", "utun4", "vpn-cgnat"),
    ("169.254.10.1", "eth0", "link-local"),
    ("fe80::1%eth0", "eth0", "link-local"),
    ("fd12:3456::1", "eth0", "unique-local"),
    ("2001:db8::1", "eth0", "documentation"),
    ("198.51.100.7", "eth0", "documentation"),
    ("203.0.113.9", "eth0", "documentation"),
    ("2a00:1450:4001::1", "eth0", "public"),
    ("8.8.8.8", "eth0", "public"),
    ("127.0.0.1", "lo", "loopback"),
    ("::1", "lo", "loopback"),
    ("::ffff:10.0.0.1", "eth0", "private"),
    ("240.0.0.1", "eth0", "reserved"),
])
def test_classify(address: str, interface: str, kind: str) -> None:
    assert classify(address, interface) == kind


def test_classify_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        classify("not-an-address")


@given(st.integers(min_value=int(netinfo.CGNAT.network_address),
                   max_value=int(netinfo.CGNAT.broadcast_address)))
def test_cgnat_range_depends_on_interface(n: int) -> None:
    addr = str(ipaddress.IPv4Address(n))
    assert classify(addr, "eth0") == "cgnat"
    assert classify(addr, "tailscale0") == "vpn-cgnat"


@given(st.sampled_from(netinfo.RFC1918).flatmap(
    lambda net: st.integers(int(net.network_address), int(net.broadcast_address))))
def test_rfc1918_is_private(n: int) -> None:
    assert classify(str(ipaddress.IPv4Address(n)), "eth0") == "private"


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.sampled_from(["eth0", "wg0"]))
def test_classify_total_and_consistent(ip, interface: str) -> None:
    kind = classify(str(ip), interface)
    assert kind in netinfo.KIND_TEXT
    if kind == "public":
        assert ip.is_global and ip not in netinfo.CGNAT
    if ip.is_global and ip.version == 4:
        assert kind == "public"


def test_prefixlen() -> None:
    assert prefixlen("255.255.255.0") == 24
    assert prefixlen("ffff:ffff:ffff:ffff::") == 64
    assert prefixlen(None) is None
    assert prefixlen("garbage") is None


@given(st.integers(0, 32))
def test_prefixlen_v4_roundtrip(n: int) -> None:
    assert prefixlen(str(ipaddress.IPv4Network(f"0.0.0.0/{n}").netmask)) == n


# ---------------------------------------------------------------- build()

RAW = {
    "lo": [(V4, "127.0.0.1", "255.0.0.0"), (V6, "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")],
    "wlan0": [(17, "aa:bb:cc:dd:ee:ff", None), (V6, "fe80::1%wlan0", "ffff:ffff:ffff:ffff::"),
              (V4, "192.168.1.23", "255.255.255.0")],
    "wg0": [(V4, "10.8.0.2", "255.255.255.0")],
    "docker0": [(V4, "172.17.0.1", "255.255.0.0")],
}
UP = {"lo": True, "wlan0": True, "wg0": True, "docker0": False}
GATEWAYS = {"default": {V4: ("192.168.1.1", "wlan0")}, V4: [("192.168.1.1", "wlan0", True)]}


def test_build() -> None:
    net = build(RAW, UP, GATEWAYS)
    assert [a.cidr for a in net.addresses] == ["10.8.0.2/24", "192.168.1.23/24", "fe80::1/64"]
    assert net.interfaces == ["wg0", "wlan0"]
    assert net.vpn_interfaces == ["wg0"]
    assert net.down_interfaces == ["docker0"]
    assert (net.default_interface, net.gateway) == ("wlan0", "192.168.1.1")
    assert net.has_default_route
    # Without the route lookup, the link address is the default interface's address in
    # the gateway's network, not the VPN's.
    assert net.link_address() == "192.168.1.23"
    assert net.on_interface("10.8.0.2").vpn
    assert net.on_interface("10.8.0.3") is None


def test_build_route_source_wins_and_finds_gatewayless_default() -> None:
    # ``default dev wg0``: netifaces lists no default gateway; the route lookup finds wg0.
    net = build(RAW, UP, {"default": {}}, route_src="10.8.0.2")
    assert net.default_interface == "wg0" and net.gateway is None
    assert net.link_address() == "10.8.0.2"


def test_build_loopback_only() -> None:
    net = build({"lo": RAW["lo"]}, {"lo": True}, {"default": {}})
    assert net.addresses == [] and net.usable == []
    assert not net.has_default_route
    assert net.link_address() is None


# ---------------------------------------------------------------- the NAT verdict


def net_with(*addrs: tuple[str, str], gateway: str | None = None) -> netinfo.LocalNetwork:
    raw: dict[str, list] = {}
    for iface, cidr in addrs:
        ip = ipaddress.ip_interface(cidr)
        raw.setdefault(iface, []).append((V4 if ip.version == 4 else V6, str(ip.ip),
                                          str(ip.network.netmask)))
    gws = {"default": {V4: (gateway, addrs[0][0])}} if gateway else {"default": {}}
    return build(raw, {}, gws)


def test_public_on_interface_is_no_nat() -> None:
    v = nat_verdict(net_with(("eth0", "198.51.100.20/24")), "198.51.100.20")
    assert (v.behind_nat, v.cgnat, v.reachable_from_internet, v.recommended_mode, v.partial) == \
        (False, False, True, "direct", False)
    assert any("dynamic" in d for d in v.details)
    assert v.advice == ["but home public addresses are often dynamic: a saved direct setup "
                        "breaks when the address changes"]


def test_private_with_other_public_is_nat() -> None:
    v = nat_verdict(net_with(("wlan0", "192.168.1.23/24"), gateway="192.168.1.1"), "203.0.113.7")
    assert (v.behind_nat, v.cgnat, v.reachable_from_internet, v.recommended_mode) == \
        (True, False, False, "tunnel")
    assert "behind NAT" in v.summary and "203.0.113.7" in v.summary
    assert v.advice == []  # plain NAT: tunnel mode, nothing more to say


def test_cgnat_address() -> None:
    v = nat_verdict(net_with(("wwan0", "100.72.1.5/24")), "203.0.113.7")
    assert v.behind_nat and v.cgnat and v.recommended_mode == "tunnel"
    assert "carrier-grade" in v.summary
    assert any("port forwarding" in d for d in v.details)
    assert v.advice == ["port forwarding on your router cannot work"]


def test_cgnat_gateway() -> None:
    v = nat_verdict(net_with(("eth0", "192.168.0.5/24"), gateway="100.64.0.1"), "203.0.113.7")
    assert v.cgnat


def test_tailscale_address_is_not_cgnat() -> None:
    net = net_with(("wlan0", "192.168.1.23/24"), ("tailscale0", "100.101.102.103/32"),
                   gateway="192.168.1.1")
    v = nat_verdict(net, "203.0.113.7")
    assert v.behind_nat and not v.cgnat
    assert v.vpn_addresses == ["100.101.102.103"]
    assert any("--link-host 100.101.102.103" in d for d in v.details)
    assert v.advice == ["the VPN address 100.101.102.103 (tailscale0) may serve for direct mode "
                        "if the remote host is on that VPN"]


def test_offline_private_is_partial_nat() -> None:
    v = nat_verdict(net_with(("wlan0", "192.168.1.23/24")), None)
    assert v.partial and v.behind_nat and v.recommended_mode == "tunnel"
    assert "partial" in v.summary


def test_offline_public_is_partial_direct() -> None:
    v = nat_verdict(net_with(("eth0", "8.8.4.4/24")), None)
    assert v.partial and v.behind_nat is False and v.recommended_mode == "direct"
    assert v.reachable_from_internet


def test_offline_cgnat() -> None:
    v = nat_verdict(net_with(("wwan0", "100.72.1.5/24")), None)
    assert v.partial and v.cgnat and v.behind_nat


def test_no_addresses() -> None:
    v = nat_verdict(build({}, {}, {}), None)
    assert v.behind_nat is None and v.recommended_mode == "tunnel"


addr_strategy = st.tuples(
    st.sampled_from(["eth0", "wlan0", "wg0", "tailscale0", "tun0"]),
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).filter(lambda ip: not ip.is_loopback),
)


@given(st.lists(addr_strategy, max_size=4),
       st.one_of(st.none(), st.ip_addresses(v=4).map(str)))
def test_verdict_invariants(addrs, public) -> None:
    raw: dict[str, list] = {}
    for iface, ip in addrs:
        raw.setdefault(iface, []).append((V4 if ip.version == 4 else V6, str(ip), None))
    net = build(raw, {}, {})
    v = nat_verdict(net, public)
    assert v.recommended_mode == ("direct" if v.behind_nat is False else "tunnel")
    assert not (v.reachable_from_internet and v.behind_nat)
    assert v.partial == (public is None)
    if public is not None and net.on_interface(public) is not None:
        assert v.behind_nat is False and not v.cgnat
    for a in v.vpn_addresses:
        assert any(b.vpn for b in net.addresses if b.address == a)
