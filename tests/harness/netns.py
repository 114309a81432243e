"""Network namespaces for tests: :class:`Netns`, :func:`link`, :func:`nat_topology`.

Every name is random (parallel runs share this machine); every namespace is deleted on
exit after killing whatever still runs in it. Addresses are private (RFC 1918) or
documentation ranges (RFC 5737) and exist only inside our namespaces: nothing here is
routed to the real network. Needs root.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Iterator, Sequence

from .procs import terminate

IP = shutil.which("ip") or "/usr/sbin/ip"
IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"


class NetnsError(RuntimeError):
    """A namespace command failed (message includes its output)."""


def _run(argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


@functools.lru_cache(maxsize=None)
def netns_unavailable_reason() -> str | None:
    """None if network namespaces (and iptables inside them) work here, else why not.

    Probes for real: creates a namespace, runs ``ip link`` and ``iptables -L`` in it,
    deletes it.
    """
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists(IP):
        return "iproute2 (ip) is not installed"
    if not os.path.exists(IPTABLES):
        return "iptables is not installed"
    try:
        with Netns("mkprobe") as ns:
            ns.run(["ip", "link", "show", "lo"])
            ns.iptables("-L", "-n")
            ns.iptables("-t", "nat", "-L", "-n")
    except (NetnsError, OSError, subprocess.SubprocessError) as err:
        return f"network namespaces or iptables unusable: {err}"
    return None


class Netns:
    """A network namespace named ``<prefix><8 hex>`` with ``lo`` up.

    Context manager (or :meth:`create` / :meth:`delete`). On delete, processes started
    with :meth:`popen` and any other process still in the namespace are killed first.
    """

    def __init__(self, prefix: str = "mkt") -> None:
        self.name = f"{prefix}{secrets.token_hex(4)}"
        self._popens: list[subprocess.Popen[Any]] = []
        self._created = False

    def __repr__(self) -> str:
        return f"<Netns {self.name}>"

    def __str__(self) -> str:
        return self.name

    def __enter__(self) -> "Netns":
        return self.create()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.delete()

    def create(self) -> "Netns":
        """``ip netns add`` and bring ``lo`` up."""
        _run([IP, "netns", "add", self.name])
        self._created = True
        try:
            _run([IP, "-n", self.name, "link", "set", "lo", "up"])
        except BaseException:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        """Kill what runs in the namespace, then ``ip netns del``. Idempotent."""
        if not self._created:
            return
        for proc in self._popens:
            if proc.poll() is None:
                terminate([proc.pid])
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._popens.clear()
        terminate(self.pids())
        subprocess.run([IP, "netns", "del", self.name], capture_output=True, timeout=30)
        self._created = False

    def pids(self) -> list[int]:
        """Pids of processes in the namespace (``ip netns pids``)."""
        done = subprocess.run([IP, "netns", "pids", self.name], capture_output=True,
                              text=True, timeout=30)
        return [int(p) for p in done.stdout.split() if p.isdigit()]

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``ip netns exec NAME argv``."""
        return [IP, "netns", "exec", self.name, *argv]

    def exec(self, argv: Sequence[str], check: bool = True, timeout: float = 30,
             **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the namespace, text mode, output captured unless overridden.
        With ``check`` (default) a failure raises :class:`NetnsError` with the output."""
        kw.setdefault("capture_output", "stdout" not in kw and "stderr" not in kw)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL if "input" not in kw else None)
        done = subprocess.run(self.argv(argv), timeout=timeout, **kw)
        if check and done.returncode != 0:
            raise NetnsError(f"in {self.name}: {' '.join(argv)} failed ({done.returncode}):\n"
                             f"{done.stdout or ''}{done.stderr or ''}")
        return done

    run = exec

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in the namespace in the background; killed on :meth:`delete`."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.argv(argv), **kw)
        self._popens.append(proc)
        return proc

    def python(self, code: str, timeout: float = 30, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet (``python3 -c code``) in the namespace."""
        return self.exec([sys.executable, "-c", code], timeout=timeout, check=check)

    def iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``iptables -w ARGS`` in the namespace (its own, empty ruleset)."""
        return self.exec([IPTABLES, "-w", *args], check=check)

    def sysctl(self, key: str, value: str) -> None:
        """``sysctl -w key=value`` in the namespace (net.* sysctls are per namespace)."""
        self.exec(["sysctl", "-q", "-w", f"{key}={value}"])

    def default_route(self, via: str) -> None:
        """``ip route replace default via VIA``."""
        _run([IP, "-n", self.name, "route", "replace", "default", "via", via])

    def addresses(self) -> list[str]:
        """IPv4 addresses in the namespace (``ip -4 -o addr``), without prefix length."""
        done = _run([IP, "-n", self.name, "-4", "-o", "addr", "show"])
        return [line.split()[3].split("/")[0] for line in done.stdout.splitlines()]


@dataclass(frozen=True)
class Link:
    """One veth pair between two namespaces."""

    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    addr_a: str
    """Address of ``if_a`` without prefix length."""
    addr_b: str


def _ns_name(ns: Netns | str) -> str:
    return ns.name if isinstance(ns, Netns) else ns


def link(ns_a: Netns | str, ns_b: Netns | str, addr_a_cidr: str, addr_b_cidr: str) -> Link:
    """A veth pair (random names <= 15 chars) between two namespaces, addressed and up.

    Both ends are created directly inside their namespaces (never in the host's); they
    vanish when either namespace is deleted.
    """
    a, b = _ns_name(ns_a), _ns_name(ns_b)
    tag = secrets.token_hex(4)
    if_a, if_b = f"mkv{tag}a", f"mkv{tag}b"
    _run([IP, "link", "add", if_a, "netns", a, "type", "veth", "peer", "name", if_b,
          "netns", b])
    for ns, ifname, cidr in ((a, if_a, addr_a_cidr), (b, if_b, addr_b_cidr)):
        _run([IP, "-n", ns, "addr", "add", cidr, "dev", ifname])
        _run([IP, "-n", ns, "link", "set", ifname, "up"])
    return Link(a, b, if_a, if_b, addr_a_cidr.split("/")[0], addr_b_cidr.split("/")[0])


@dataclass(frozen=True)
class NatTopology:
    """laptop --(LAN)-- router --(WAN, MASQUERADE)-- internet.

    The laptop reaches the internet host through the router; the internet host sees the
    router's WAN address as the source and has no route back to the LAN.
    """

    laptop: Netns
    router: Netns
    internet: Netns
    lan: Link
    """laptop side is ``lan.if_a``/``lan.addr_a``; router side ``lan.if_b``/``lan.addr_b``."""
    wan: Link
    """router side is ``wan.if_a``/``wan.addr_a``; internet side ``wan.if_b``/``wan.addr_b``."""

    @property
    def laptop_addr(self) -> str:
        return self.lan.addr_a

    @property
    def router_lan_addr(self) -> str:
        return self.lan.addr_b

    @property
    def router_wan_addr(self) -> str:
        """The public address the internet host sees for the laptop."""
        return self.wan.addr_a

    @property
    def internet_addr(self) -> str:
        """The workstation / what-is-my-IP host."""
        return self.wan.addr_b


LAN_LAPTOP, LAN_ROUTER = "10.77.0.2/24", "10.77.0.1/24"  # RFC 1918
WAN_ROUTER, WAN_INTERNET = "198.51.100.1/24", "198.51.100.10/24"  # RFC 5737 TEST-NET-2


@contextlib.contextmanager
def nat_topology() -> Iterator[NatTopology]:
    """Build laptop / router / internet namespaces with NAT on the router; delete on exit.

    laptop 10.77.0.2 (default via 10.77.0.1) -- router 10.77.0.1 | 198.51.100.1
    (ip_forward=1, ``-t nat POSTROUTING -o WAN -j MASQUERADE``) -- internet 198.51.100.10.
    """
    with contextlib.ExitStack() as stack:
        laptop = stack.enter_context(Netns("mklap"))
        router = stack.enter_context(Netns("mkrtr"))
        internet = stack.enter_context(Netns("mknet"))
        lan = link(laptop, router, LAN_LAPTOP, LAN_ROUTER)
        wan = link(router, internet, WAN_ROUTER, WAN_INTERNET)
        laptop.default_route(lan.addr_b)
        router.sysctl("net.ipv4.ip_forward", "1")
        router.iptables("-t", "nat", "-A", "POSTROUTING", "-o", wan.if_a, "-j", "MASQUERADE")
        yield NatTopology(laptop, router, internet, lan, wan)


def tcp_connect(ns: Netns | None, host: str, port: int, timeout: float = 3.0) -> bool:
    """True if a TCP connection to ``host:port`` (from inside ``ns``) succeeds in time."""
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout={timeout}).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    argv = [sys.executable, "-c", code]
    if ns is not None:
        argv = [IP, "netns", "exec", _ns_name(ns), *argv]
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout + 10).returncode == 0
    except subprocess.TimeoutExpired:
        return False
