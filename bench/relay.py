#!/usr/bin/env python3
"""A delaying TCP relay on loopback: a stand-in for a link with round trips of 2 x DELAY.

    python bench/relay.py --listen-port 0 --to-port 2222 --delay-ms 25

Every byte is held ``delay`` seconds in each direction before it is passed on (one
timer queue per direction, so order is kept and throughput is not limited by the
delay; a round trip costs 2 x delay like a real link). Loopback only: it listens on and
connects to 127.0.0.1, never anything else. Bounded: at most ``max_conns`` connections
at once, at most ``max_buffer`` bytes queued per direction (the reader waits, as TCP
flow control would), and :meth:`Relay.close` ends it all.

Used by bench/setup_bench.py in front of the sandbox sshd (there is no netem here).
"""

from __future__ import annotations

import argparse
import collections
import socket
import threading
import time

LOOPBACK = "127.0.0.1"


class _Pipe(threading.Thread):
    """One direction: read from ``src``, deliver to ``dst`` ``delay`` s later."""

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float, max_buffer: int,
                 done: threading.Event, ends: list, ends_lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.ends, self.ends_lock = ends, ends_lock  # shared by the two directions
        self.src, self.dst, self.delay, self.max_buffer, self.done = src, dst, delay, max_buffer, done
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.cond = threading.Condition()
        self.eof = False
        self.writer = threading.Thread(target=self._deliver, daemon=True)

    def run(self) -> None:
        self.writer.start()
        try:
            while not self.done.is_set():
                data = self.src.recv(65536)
                with self.cond:
                    while self.queued > self.max_buffer and not self.done.is_set():
                        self.cond.wait(0.1)
                    if not data:
                        self.eof = True
                        self.queue.append((time.monotonic() + self.delay, b""))
                        self.cond.notify_all()
                        return
                    self.queue.append((time.monotonic() + self.delay, data))
                    self.queued += len(data)
                    self.cond.notify_all()
        except OSError:
            with self.cond:
                self.eof = True
                self.queue.append((time.monotonic(), b""))
                self.cond.notify_all()

    def _deliver(self) -> None:
        try:
            while not self.done.is_set():
                with self.cond:
                    while not self.queue and not self.done.is_set():
                        self.cond.wait(0.1)
                    if not self.queue:
                        return
                    due, data = self.queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                with self.cond:
                    self.queue.popleft()
                    self.queued -= len(data)
                    self.cond.notify_all()
                if not data:  # the sender closed: pass the EOF on
                    try:
                        self.dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    self._one_side_ended()
                    return
                self.dst.sendall(data)
        except OSError:
            self.done.set()

    def _one_side_ended(self) -> None:
        """Both directions ended: the connection is over (its slot is free again)."""
        with self.ends_lock:
            self.ends[0] += 1
            over = self.ends[0] >= 2
        if over:
            self.done.set()
            for sock in (self.src, self.dst):
                try:
                    sock.close()
                except OSError:
                    pass


class Relay:
    def __init__(self, to_port: int, delay: float, listen_port: int = 0, max_conns: int = 64,
                 max_buffer: int = 4 << 20, to_host: str = LOOPBACK) -> None:
        """Listen on loopback, connect each client to ``to_host:to_port`` (loopback by
        default; bench/fleet.py relays to sshd's in other network namespaces)."""
        self.to_port, self.delay, self.max_conns, self.max_buffer = to_port, delay, max_conns, max_buffer
        self.to_host = to_host
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((LOOPBACK, listen_port))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.closed = threading.Event()
        self.conns: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self.lock = threading.Lock()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.conns = [c for c in self.conns if not c[2].is_set()]
                if len(self.conns) >= self.max_conns:
                    client.close()
                    continue
                self.accepted += 1
            try:
                upstream = socket.create_connection((self.to_host, self.to_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            done = threading.Event()
            with self.lock:
                self.conns.append((client, upstream, done))
            ends, ends_lock = [0], threading.Lock()
            _Pipe(client, upstream, self.delay, self.max_buffer, done, ends, ends_lock).start()
            _Pipe(upstream, client, self.delay, self.max_buffer, done, ends, ends_lock).start()

    def close(self) -> None:
        self.closed.set()
        self.server.close()
        with self.lock:
            for a, b, done in self.conns:
                done.set()
                for s in (a, b):
                    try:
                        s.close()
                    except OSError:
                        pass

    def __enter__(self) -> "Relay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen-port", type=int, default=0)
    p.add_argument("--to-port", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=25.0, help="one way (default 25)")
    a = p.parse_args()
    relay = Relay(a.to_port, a.delay_ms / 1000, a.listen_port)
    print(f"relaying 127.0.0.1:{relay.port} -> 127.0.0.1:{a.to_port}, {a.delay_ms:g} ms each way",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        relay.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
