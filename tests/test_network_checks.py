"""MK101 local-addresses, MK102 public-address, MK103 nat.

The integration tests build real networks in namespaces (a laptop behind a router doing
MASQUERADE, a laptop directly on the "internet", carrier-grade NAT, a Tailscale-named
VPN interface, no route at all, dropped packets) and run the real ``mkdoctor`` inside the
laptop's namespace, asking a tiny what-is-my-IP service in the "internet" namespace that
answers with the client address it sees.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Callable

import pytest

from mkdoctor.checks.mk102_public_address import BadAnswer, Lookup, lookup, parse_answer, unanswered
from tests.harness.netns import IP, Netns, link
from tests.helpers import by_id, json_report

# ---------------------------------------------------------------- MK102 pure parts


@pytest.mark.parametrize("body, address", [
    ("203.0.113.7\n", "203.0.113.7"),
    ("  198.51.100.1  \r\n", "198.51.100.1"),
    ('{"ip":"185.103.110.182"}', "185.103.110.182"),
    ('{"ip": "2001:db8::1"}\n', "2001:db8::1"),
    ("2001:DB8:0::1", "2001:db8::1"),
])
def test_parse_answer(body: str, address: str) -> None:
    assert parse_answer(body) == address


@pytest.mark.parametrize("body", [
    "", "   ", "<html><body>Current IP Address: 1.2.3.4</body></html>", '{"ip": 5}',
    '{"address": "1.2.3.4"}', "1.2.3.4 5.6.7.8", "999.1.1.1", "fe80::1%eth0", "[1, 2]",
])
def test_parse_answer_rejects(body: str) -> None:
    with pytest.raises(BadAnswer):
        parse_answer(body)


def test_unanswered_names_the_missing_dns_rather_than_a_timeout() -> None:
    no_dns = Lookup(failures=[("https://a.example", "the name does not resolve"),
                              ("https://b.example", "the name does not resolve")])
    summary, fix = unanswered(no_dns, 5)
    assert "names do not resolve" in summary and "within" not in summary
    assert "DNS" in fix
    mixed = Lookup(failures=[("https://a.example", "the name does not resolve"),
                             ("https://b.example", "no answer in time")])
    assert unanswered(mixed, 5)[0] == "skipped: no what-is-my-IP service answered within 5 s"


def test_lookup_first_valid_answer_wins_after_a_fast_failure() -> None:
    asked: list[str] = []

    def fetch(url: str, timeout: float) -> str:
        asked.append(url)
        if url == "bad":
            raise BadAnswer("not an IP address: '<html>'")
        return "203.0.113.7"

    found = lookup(["bad", "good", "never"], 5.0, fetch)
    assert (found.address, found.service) == ("203.0.113.7", "good")
    assert asked == ["bad", "good"]  # the third one is never asked
    assert found.failures == [("bad", "not an IP address: '<html>'")]


def test_lookup_hanging_service_does_not_hold_the_next_one() -> None:
    release = threading.Event()

    def fetch(url: str, timeout: float) -> str:
        if url == "hangs":
            release.wait(timeout)
            raise TimeoutError("no answer in time")
        return "198.51.100.1"

    start = time.monotonic()
    found = lookup(["hangs", "good"], 2.0, fetch)
    took = time.monotonic() - start
    release.set()
    assert found.address == "198.51.100.1"
    assert 0.9 <= took < 1.8  # the second starts after its share (2 s / 2 services)


def test_lookup_all_hang_ends_within_the_timeout() -> None:
    release = threading.Event()

    def fetch(url: str, timeout: float) -> str:
        release.wait(timeout)
        raise TimeoutError

    start = time.monotonic()
    found = lookup(["a", "b", "c"], 1.0, fetch)
    took = time.monotonic() - start
    release.set()
    assert found.address is None
    assert took < 1.6
    assert [u for u, _ in found.failures] == ["a", "b", "c"]


# ---------------------------------------------------------------- integration helpers

WHOAMI_PORT = 8080
# A what-is-my-IP service: answers GET / with the client address it sees (plain text),
# /json with {"ip": ...}, /bad with HTML. Prints "ready" once it listens.
WHOAMI = r"""
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ip = self.client_address[0]
        body = {"/json": json.dumps({"ip": ip}), "/bad": "<html>your IP</html>"}.get(self.path, ip + "\n")
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H)
print("ready", flush=True)
server.serve_forever()
"""

WAN_ROUTER, WAN_INTERNET = "198.51.100.1", "198.51.100.10"


def start_whoami(ns: Netns, address: str, port: int = WHOAMI_PORT) -> str:
    """Start the service in ``ns``; its URL."""
    proc = ns.popen([sys.executable, "-c", WHOAMI, address, str(port)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"whoami did not start: {line}{proc.stderr.read()}"
    return f"http://{address}:{port}/"


def check_run(ns: Netns | str, *args: str, ids: str = "MK101,MK102,MK103") -> tuple[dict, dict, float]:
    """Run mkdoctor in ``ns``; (report, checks by ID, seconds)."""
    start = time.monotonic()
    # NO_PROXY: a proxy from the developer's environment must not carry the lookup.
    report, done = json_report("--only", ids, *args, netns=str(ns),
                               env={"NO_PROXY": "*", "no_proxy": "*"}, timeout=60)
    took = time.monotonic() - start
    assert "Traceback" not in done.stderr, done.stderr
    return report, by_id(report), took


def wait_carrier(ns: Netns | str, ifname: str, timeout: float = 5) -> None:
    """Wait until ``ifname`` has a carrier (the kernel reports it a little late)."""
    end = time.monotonic() + timeout
    while True:
        out = subprocess.run([IP, "-n", str(ns), "link", "show", ifname], check=True,
                             capture_output=True, text=True).stdout
        if "NO-CARRIER" not in out and "LOWER_UP" in out:
            return
        assert time.monotonic() < end, f"{ifname} has no carrier: {out}"
        time.sleep(0.05)


def rename(ns: Netns | str, old: str, new: str) -> None:
    for argv in (["link", "set", old, "down"], ["link", "set", old, "name", new],
                 ["link", "set", new, "up"]):
        subprocess.run([IP, "-n", str(ns), *argv], check=True, capture_output=True)
    wait_carrier(ns, new)


# Like a VPN client: create tun0 and hold it open (a tun device has a carrier only while
# a program holds it). Prints "ready" once the device exists.
TUN_HOLDER = r"""
import fcntl, os, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", sys.argv[1].encode(), IFF_TUN | IFF_NO_PI))
print("ready", flush=True)
time.sleep(600)
"""


def behind_router(make: Callable[..., Netns], laptop_cidr: str, router_cidr: str,
                  laptop_if: str | None = None) -> tuple[Netns, Netns, Netns]:
    """laptop -- router (MASQUERADE) -- internet, with the LAN numbered as given."""
    laptop, router, internet = make("mklap"), make("mkrtr"), make("mknet")
    lan = link(laptop, router, laptop_cidr, router_cidr)
    wan = link(router, internet, f"{WAN_ROUTER}/24", f"{WAN_INTERNET}/24")
    if laptop_if:
        rename(laptop, lan.if_a, laptop_if)
    laptop.default_route(lan.addr_b)
    router.sysctl("net.ipv4.ip_forward", "1")
    router.iptables("-t", "nat", "-A", "POSTROUTING", "-o", wan.if_a, "-j", "MASQUERADE")
    return laptop, router, internet


# ---------------------------------------------------------------- NAT verdicts


@pytest.mark.integration
def test_behind_nat_recommends_tunnel(nat_topology) -> None:
    url = start_whoami(nat_topology.internet, nat_topology.internet_addr)
    report, checks, _ = check_run(nat_topology.laptop, "--ip-service", url)
    assert checks["MK101"]["status"] == "pass"
    assert nat_topology.laptop_addr in checks["MK101"]["summary"]
    assert f"via {nat_topology.router_lan_addr}" in checks["MK101"]["summary"]
    assert checks["MK102"]["status"] == "pass"
    assert nat_topology.router_wan_addr in checks["MK102"]["summary"]
    mk103 = checks["MK103"]
    assert mk103["status"] == "pass", mk103
    assert "behind NAT" in mk103["summary"] and "carrier-grade" not in mk103["summary"]
    assert "recommended mode: tunnel" in mk103["summary"]
    assert report["target"]["mode"] == "tunnel"  # Context.mode follows MK103's fact


@pytest.mark.integration
def test_behind_nat_with_direct_mode_warns(nat_topology) -> None:
    url = start_whoami(nat_topology.internet, nat_topology.internet_addr)
    _, checks, _ = check_run(nat_topology.laptop, "--ip-service", url, "--mode", "direct")
    mk103 = checks["MK103"]
    assert mk103["status"] == "warn", mk103
    assert "--mode tunnel" in mk103["fix"] and "31415" in mk103["fix"]


@pytest.mark.integration
def test_public_address_on_interface_is_no_nat(netns_factory) -> None:
    laptop, internet = netns_factory("mklap"), netns_factory("mknet")
    wire = link(laptop, internet, "198.51.100.20/24", f"{WAN_INTERNET}/24")
    laptop.default_route(WAN_INTERNET)
    whoami = start_whoami(internet, WAN_INTERNET)
    # The first service answers HTML, the second JSON: the first valid answer wins.
    report, checks, _ = check_run(laptop, "--ip-service", whoami + "bad",
                                  "--ip-service", whoami + "json")
    mk102 = checks["MK102"]
    assert mk102["status"] == "pass", mk102
    assert wire.addr_a in mk102["summary"]
    assert any("not an IP address" in d for d in mk102["details"])
    mk103 = checks["MK103"]
    assert mk103["status"] == "pass", mk103
    assert mk103["summary"].startswith("no NAT") and "recommended mode: direct" in mk103["summary"]
    # the default text report shows only the summary: the key advice is there, on one line
    assert "home public addresses are often dynamic" in mk103["summary"]
    assert "\n" not in mk103["summary"]
    assert report["target"]["mode"] == "direct"
    assert any("connect back to 198.51.100.20" in d for d in checks["MK101"]["details"])


@pytest.mark.integration
def test_cgnat_address_fails_direct_mode(netns_factory) -> None:
    laptop, _, internet = behind_router(netns_factory, "100.72.0.2/24", "100.72.0.1/24")
    url = start_whoami(internet, WAN_INTERNET)
    _, checks, _ = check_run(laptop, "--ip-service", url, "--mode", "direct")
    mk103 = checks["MK103"]
    assert mk103["status"] == "fail", mk103
    assert "carrier-grade NAT" in mk103["summary"]
    assert "port forwarding cannot make this laptop reachable" in mk103["summary"]
    assert "--mode tunnel" in mk103["fix"]
    assert any("port forwarding" in d for d in mk103["details"])
    # without --mode direct it passes, recommending tunnel, and still says it in the summary
    _, checks, _ = check_run(laptop, "--ip-service", url)
    assert checks["MK103"]["status"] == "pass", checks["MK103"]
    assert checks["MK103"]["summary"].endswith(
        "recommended mode: tunnel; port forwarding on your router cannot work")


@pytest.mark.integration
def test_tailscale_address_is_not_cgnat(netns_factory) -> None:
    # Same network, but the 100.64.0.0/10 address is on an interface named tailscale0:
    # that is Tailscale's address space, not the provider's NAT.
    laptop, _, internet = behind_router(netns_factory, "100.72.0.2/24", "100.72.0.1/24",
                                        laptop_if="tailscale0")
    url = start_whoami(internet, WAN_INTERNET)
    _, checks, _ = check_run(laptop, "--ip-service", url, "--mode", "direct")
    assert "VPN: tailscale0" in checks["MK101"]["summary"]
    mk103 = checks["MK103"]
    assert mk103["status"] == "warn", mk103
    assert "carrier-grade" not in mk103["summary"] and "behind NAT" in mk103["summary"]
    assert ("the VPN address 100.72.0.2 (tailscale0) may serve for direct mode if the remote "
            "host is on that VPN") in mk103["summary"]
    assert any("--link-host 100.72.0.2" in d for d in mk103["details"])
    # Direct mode over the VPN address is fine.
    _, checks, _ = check_run(laptop, "--ip-service", url, "--mode", "direct",
                             "--link-host", "100.72.0.2")
    assert checks["MK103"]["status"] == "pass", checks["MK103"]


# ---------------------------------------------------------------- offline


@pytest.mark.integration
def test_no_route_skips_at_once(netns_factory) -> None:
    laptop = netns_factory("mklap")
    link(laptop, netns_factory("mkpeer"), "10.99.0.2/24", "10.99.0.1/24")  # no default route
    _, checks, took = check_run(laptop, "--ip-service", f"http://{WAN_INTERNET}:{WHOAMI_PORT}/",
                                "--timeout", "10")
    mk102 = checks["MK102"]
    assert mk102["status"] == "skip", mk102
    assert "no route" in mk102["summary"]
    assert mk102["duration_s"] < 0.5 and took < 5
    assert checks["MK101"]["status"] == "pass"
    assert "no default route" in checks["MK101"]["summary"]
    mk103 = checks["MK103"]
    assert mk103["status"] == "pass" and "partial" in mk103["summary"]
    assert "recommended mode: tunnel" in mk103["summary"]


@pytest.mark.integration
def test_offline_flag_skips(nat_topology) -> None:
    url = start_whoami(nat_topology.internet, nat_topology.internet_addr)
    _, checks, _ = check_run(nat_topology.laptop, "--ip-service", url, "--offline")
    assert checks["MK102"]["status"] == "skip"
    assert "--offline" in checks["MK102"]["summary"]
    assert any("partial verdict" in d for d in checks["MK103"]["details"])


@pytest.mark.integration
def test_dropped_packets_skip_within_the_timeout(nat_topology) -> None:
    url = start_whoami(nat_topology.internet, nat_topology.internet_addr)
    nat_topology.router.iptables("-I", "FORWARD", "-d", nat_topology.internet_addr, "-j", "DROP")
    _, checks, took = check_run(nat_topology.laptop, "--ip-service", url, "--timeout", "2")
    mk102 = checks["MK102"]
    assert mk102["status"] == "skip", mk102
    assert "no what-is-my-IP service answered within 2 s" in mk102["summary"]
    assert mk102["fix"]
    assert 1.5 <= mk102["duration_s"] < 2.6
    assert took < 4
    assert checks["MK103"]["status"] == "pass"
    assert "probably behind NAT" in checks["MK103"]["summary"]


# ---------------------------------------------------------------- MK101


@pytest.mark.integration
def test_vpn_interfaces_are_named(netns_factory) -> None:
    laptop, peer = netns_factory("mklap"), netns_factory("mkpeer")
    lan = link(laptop, peer, "192.168.50.2/24", "192.168.50.1/24")
    laptop.default_route(lan.addr_b)
    vpn = link(laptop, peer, "10.8.0.2/24", "10.8.0.1/24")
    rename(laptop, vpn.if_a, "wg0")
    holder = laptop.popen([sys.executable, "-c", TUN_HOLDER, "tun0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
    laptop.exec(["ip", "addr", "add", "10.9.0.2/24", "dev", "tun0"])
    laptop.exec(["ip", "link", "set", "tun0", "up"])
    wait_carrier(laptop, "tun0")
    _, checks, _ = check_run(laptop, "--offline")
    mk101 = checks["MK101"]
    assert mk101["status"] == "pass", mk101
    assert "VPN: tun0, wg0" in mk101["summary"]
    assert any(d.startswith("wg0: 10.8.0.2/24") and "[VPN]" in d for d in mk101["details"])
    assert any("connect back to 192.168.50.2" in d for d in mk101["details"])
    assert any("--link-host 10.8.0.2" in d for d in checks["MK103"]["details"])


@pytest.mark.integration
def test_link_host_not_on_this_laptop_warns(nat_topology) -> None:
    _, checks, _ = check_run(nat_topology.laptop, "--offline", "--link-host", "10.77.0.99",
                             ids="MK101")
    mk101 = checks["MK101"]
    assert mk101["status"] == "warn", mk101
    assert "10.77.0.99" in mk101["summary"] and nat_topology.laptop_addr in mk101["fix"]


@pytest.mark.integration
def test_loopback_only_fails(netns_factory) -> None:
    laptop = netns_factory("mklap")
    report, checks, took = check_run(laptop, "--ip-service", f"http://{WAN_INTERNET}/")
    mk101 = checks["MK101"]
    assert mk101["status"] == "fail", mk101
    assert mk101["summary"] == "no network interface but loopback"
    assert "ip addr" in mk101["fix"]
    assert checks["MK102"]["status"] == "skip" and took < 5
    assert checks["MK103"]["status"] == "skip"
    assert report["target"]["mode"] == "tunnel"
