"""The laptop's side of the link: listening on the two link ports, as the front end does.

The front end opens its end of the link with ``-LinkMode Listen -LinkProtocol TCPIP
-LinkName p1@host,p2@host`` and the kernel connects to both ports (see checks/launch.py).
:class:`LinkListener` does the same for MK403 (which sends a token through the path) and
MK404 (which waits for the real kernel): one background thread, every socket closed on
:meth:`LinkListener.close` (also on exit from ``with``), nothing left behind.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import selectors
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence


class ListenError(Exception):
    """A link port cannot be listened on; ``port`` and ``reason`` say which and why."""

    def __init__(self, port: int, reason: str, busy: bool) -> None:
        super().__init__(f"port {port}: {reason}")
        self.port = port
        self.reason = reason
        self.busy = busy


@dataclass
class PortState:
    port: int
    bound: str = ""  # the address actually bound
    peers: list[str] = field(default_factory=list)  # one per accepted connection
    data: bytes = b""  # everything received on all its connections (capped)


MAX_DATA = 4096


def bind_address(host: Optional[str]) -> str:
    """Where to listen for ``host``: itself when it is one of this machine's addresses,
    else the wildcard (the link address may be a router's, forwarded to us)."""
    if not host:
        return "0.0.0.0"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return "0.0.0.0"
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, 0))
            return host
        except OSError:
            return "::" if addr.version == 6 else "0.0.0.0"


# How long a busy link port is tried again before it is reported busy (see _bind).
REBIND_WAIT = 1.0


class LinkListener:
    """Listen on ``ports`` at ``host`` until closed; record every connection and its bytes."""

    def __init__(self, host: str, ports: Sequence[int]) -> None:
        self.host = host
        self.states = {p: PortState(p) for p in ports}
        self._sel = selectors.DefaultSelector()
        self._servers: list[socket.socket] = []
        self._conns: list[socket.socket] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # written to on close: the thread's select() returns at once instead of at its
        # next timeout (close() waits for the thread)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", 0))

    # --- lifecycle -------------------------------------------------------------------

    def open(self) -> "LinkListener":
        """Bind and listen on every port; :class:`ListenError` (all closed) if one fails."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            for port in self.states:
                srv = socket.socket(family, socket.SOCK_STREAM)
                self._servers.append(srv)
                # SO_REUSEADDR (POSIX): rebinding over connections in TIME_WAIT from an
                # earlier step works, while a port another program LISTENS on still fails.
                # (On Windows it would allow stealing a listening port: not set there.)
                if sys.platform != "win32":
                    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._bind(srv, port)
                srv.setblocking(False)
                self._sel.register(srv, selectors.EVENT_READ, ("server", port))
                self.states[port].bound = self.host
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._loop, name="mkd-listener", daemon=True)
        self._thread.start()
        return self

    def _bind(self, srv: socket.socket, port: int) -> None:
        """bind + listen. A port that this run's previous test has just closed can still be
        held for a moment by a child process of this one between fork and exec (the child
        has copies of every descriptor until exec closes the close-on-exec ones, and the
        run starts programs from several threads): EADDRINUSE is tried again for up to
        :data:`REBIND_WAIT` seconds before the port is called busy."""
        end = time.monotonic() + REBIND_WAIT
        while True:
            try:
                srv.bind((self.host, port))
                srv.listen(8)
                return
            except OSError as exc:
                busy = exc.errno == errno.EADDRINUSE
                if busy and time.monotonic() < end:
                    time.sleep(0.05)
                    continue
                reason = "already in use by another program" if busy else (exc.strerror or str(exc))
                raise ListenError(port, reason, busy) from None

    def __enter__(self) -> "LinkListener":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection and listening socket and stop the thread. Idempotent."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:  # closed already (a second close)
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None
        with self._cond:
            socks = self._conns + self._servers
            self._conns.clear()
            self._servers.clear()
            for sock in socks:
                try:
                    self._sel.unregister(sock)
                except (KeyError, ValueError):
                    pass
            self._cond.notify_all()
        for sock in socks + [self._wake_r, self._wake_w]:
            try:
                sock.close()
            except OSError:
                pass
        self._sel.close()  # (a thread still in select() after join's timeout returns)

    def close_connections(self) -> None:
        """Close the accepted connections (ends the link: a kernel exits), keep listening."""
        with self._cond:
            conns, self._conns = self._conns, []
            for sock in conns:
                try:
                    self._sel.unregister(sock)
                except (KeyError, ValueError):
                    pass
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    # --- waiting ---------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[dict[int, PortState]], bool], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until ``predicate(states)`` holds."""
        end = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.states):
                left = end - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return predicate(self.states)
                self._cond.wait(min(left, 0.2))
            return True

    def connected_all(self, timeout: float) -> bool:
        return self.wait_for(lambda st: all(s.peers for s in st.values()), timeout)

    def received_all(self, tokens: dict[int, bytes], timeout: float) -> bool:
        return self.wait_for(lambda st: all(tokens[p] in st[p].data for p in tokens), timeout)

    # --- the thread ------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._sel.select(timeout=1.0)  # close() wakes it
            except (OSError, ValueError):  # closed under us
                return
            for key, _ in events:
                kind, port = key.data
                sock = key.fileobj
                if kind == "wake":
                    continue
                if kind == "server":
                    try:
                        conn, peer = sock.accept()  # type: ignore[union-attr]
                    except OSError:
                        continue
                    conn.setblocking(False)
                    with self._cond:  # selector changes only under the lock
                        self._conns.append(conn)
                        self.states[port].peers.append(str(peer[0]))
                        self._sel.register(conn, selectors.EVENT_READ, ("conn", port))
                        self._cond.notify_all()
                else:
                    try:
                        data = sock.recv(1024)  # type: ignore[union-attr]
                    except OSError:
                        data = b""
                    if not data:
                        with self._cond:
                            try:
                                self._sel.unregister(sock)
                            except (KeyError, ValueError):
                                pass
                        continue
                    with self._cond:
                        state = self.states[port]
                        state.data = (state.data + data)[:MAX_DATA]
                        self._cond.notify_all()


# --------------------------------------------------------------------------- the remote end

# Run by python3 on the remote host: connect, send the token, report one line.
_PY_PROBE = r"""
import errno, socket, sys
h, p, tok, t = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
try:
    s = socket.create_connection((h, p), timeout=t)
    s.sendall(tok.encode()); s.close(); r, m = "ok", ""
except socket.timeout:
    r, m = "timeout", "no answer within %gs" % t
except ConnectionRefusedError as e:
    r, m = "refused", str(e)
except OSError as e:
    r = {errno.ENETUNREACH: "net-unreachable", errno.EHOSTUNREACH: "no-route"}.get(e.errno, "error")
    m = str(e)
print("R\t%d\tpython3\t%s\t%s" % (p, r, m))
"""


def probe_script(host: str, tokens: dict[int, str], timeout: float) -> str:
    """``sh`` script for the remote host: print ``S <$SSH_CONNECTION>``, then connect to
    ``host`` on each port at once and send its token, with python3, else bash's ``/dev/tcp``
    (under ``timeout``), else ``nc``; one ``R <port> <tool> <result> <message>`` line per
    port (result: ok, refused, timeout, no-route, net-unreachable, error, no-client)."""
    t = max(1, int(round(timeout)))
    lines = [
        "printf 'S\\t%s\\n' \"$SSH_CONNECTION\"",
        f"h={shlex.quote(host)}; t={t}",
        f"py={shlex.quote(_PY_PROBE)}",
        "probe() {",
        "  if command -v python3 >/dev/null 2>&1; then python3 -c \"$py\" \"$h\" \"$1\" \"$2\" \"$t\"; return; fi",
        "  if command -v bash >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then",
        "    if err=$(timeout \"$t\" bash -c 'exec 3<>\"/dev/tcp/$0/$1\" && printf %s \"$2\" >&3' \"$h\" \"$1\" \"$2\" 2>&1); then",
        "      printf 'R\\t%s\\tbash\\tok\\t\\n' \"$1\"",
        "    elif [ $? -eq 124 ]; then printf 'R\\t%s\\tbash\\ttimeout\\tno answer\\n' \"$1\"",
        "    else printf 'R\\t%s\\tbash\\terror\\t%s\\n' \"$1\" \"$(printf %s \"$err\" | tr '\\n\\t' '  ')\"; fi",
        "    return",
        "  fi",
        "  if command -v nc >/dev/null 2>&1; then",
        "    if err=$(printf %s \"$2\" | nc -w \"$t\" \"$h\" \"$1\" 2>&1); then printf 'R\\t%s\\tnc\\tok\\t\\n' \"$1\"",
        "    else printf 'R\\t%s\\tnc\\terror\\t%s\\n' \"$1\" \"$(printf %s \"$err\" | tr '\\n\\t' '  ')\"; fi",
        "    return",
        "  fi",
        "  printf 'R\\t%s\\tnone\\tno-client\\tneither python3, bash with timeout, nor nc\\n' \"$1\"",
        "}",
    ]
    # Both ports at once: a firewall that drops the connections costs one timeout, not one
    # per port. Each result is one short printf (one write, under PIPE_BUF), so the lines of
    # the two background jobs never mix.
    for port, token in tokens.items():
        lines.append(f"probe {int(port)} {shlex.quote(token)} &")
    lines.append("wait")
    return "\n".join(lines) + "\n"


@dataclass
class ProbeResult:
    port: int
    tool: str
    result: str
    message: str = ""


def parse_probe(text: str) -> tuple[str, dict[int, ProbeResult]]:
    """(the client address the server sees, per-port results) from :func:`probe_script`.
    bash/nc error texts are classified like python's errno."""
    seen_from = ""
    results: dict[int, ProbeResult] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "S" and len(parts) > 1:
            seen_from = parts[1].split(" ")[0].strip()
        elif parts[0] == "R" and len(parts) >= 4 and parts[1].isdigit():
            result, message = parts[3], parts[4] if len(parts) > 4 else ""
            if result == "error":
                low = message.lower()
                if "refused" in low:
                    result = "refused"
                elif "network is unreachable" in low:
                    result = "net-unreachable"
                elif "no route" in low:
                    result = "no-route"
                elif "timed out" in low:
                    result = "timeout"
            results[int(parts[1])] = ProbeResult(int(parts[1]), parts[2], result, message.strip())
    return seen_from, results


# --------------------------------------------------------------------------- same machine

# What listens on the server (Linux ss, else BSD/macOS netstat), for a link port that a
# stale session or kernel holds there: sshd then binds a reverse forward of it to ::1 only
# and reports success, and the kernel connects to the stale listener, not to the laptop.
LISTENERS = "(ss -ltn 2>/dev/null || netstat -an 2>/dev/null) | grep -i listen"
_LOOPBACK_OR_ANY = ("127.0.0.1", "0.0.0.0", "*", "[::]", "::")


def listening(netstat: str, port: int) -> bool:
    """Is ``port`` listened on at IPv4 loopback or a wildcard? (``ss -ltn``: local address
    ``127.0.0.1:31415``; BSD ``netstat -an``: ``127.0.0.1.31415``.)"""
    for line in netstat.splitlines():
        if "LISTEN" not in line.upper():
            continue
        for word in line.split():
            for sep in (":", "."):
                addr, _, p = word.rpartition(sep)
                if p == str(port) and addr in _LOOPBACK_OR_ANY:
                    return True
    return False


def taken_on_server(ctx, ports) -> list[int]:
    """Of ``ports``, those something listens on at the server's IPv4 loopback (or a
    wildcard). Read before forwarding them: afterwards our own forward listens there."""
    look = ctx.ssh.run(LISTENERS, ctx.step_timeout())
    return [p for p in ports if listening(look.stdout, p)]


_STACK_SCRIPT = "cat /proc/sys/kernel/random/boot_id 2>/dev/null; readlink /proc/self/ns/net 2>/dev/null"


def _local_stack() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        return f"{boot}\n{os.readlink('/proc/self/ns/net')}"
    except OSError:
        return ""


def same_network_stack(ctx) -> bool:
    """True when the remote host is this computer in the same network namespace (same
    Linux boot and same ``/proc/self/ns/net``): a reverse forward to 127.0.0.1 there
    cannot be told apart from a connection to our own listener, so a tunnel test would
    prove nothing. Any other system (macOS, no /proc) answers False."""
    local = _local_stack()
    if not local:
        return False
    done = ctx.ssh.run(_STACK_SCRIPT, ctx.step_timeout())
    return done.ok and done.stdout.strip() == local
