"""A delaying TCP relay for benchmarks: a link with a chosen round-trip time.

There is no netem (sch_netem) on the benchmark machines, so a relay sits in front of each
sshd: every chunk it reads is written to the other side ``delay`` seconds later, in order,
in both directions, so a round trip costs ``2 * delay`` more. It listens on loopback only,
serves until stopped, and each connection ends when either side closes.

    with DelayRelay(("10.77.0.2", 2222), delay=0.025) as relay:   # 50 ms round trips
        ... connect to ("127.0.0.1", relay.port) ...
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Optional


class DelayRelay:
    def __init__(self, upstream: tuple[str, int], delay: float = 0.025,
                 listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.upstream = upstream
        self.delay = delay
        self.listen = listen
        self.port = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._server: Optional[asyncio.base_events.Server] = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                queue.put_nowait((time.monotonic() + self.delay, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((time.monotonic() + self.delay, None))
        try:
            await sender
        except (ConnectionError, OSError):
            pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._handle, self.listen[0], self.listen[1]))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        self._server.close()
        loop.run_until_complete(self._server.wait_closed())
        loop.close()

    def start(self) -> "DelayRelay":
        self._thread = threading.Thread(target=self._run, name="delay-relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay relay did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "DelayRelay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
