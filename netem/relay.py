"""A user-space TCP relay that delays traffic in each direction (the kernel here has no netem).

Every chunk read from one side is released to the other side `delay` seconds after it was
read. Release times never decrease, so bytes leave in the order they arrived. Reading pauses
while too many bytes wait in a direction, so a peer that stops reading pushes back on the
sender the way TCP does, instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("splitcast.netem")

CHUNK_BYTES = 64 * 1024
MAX_BUFFERED_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """`HOST:PORT` (IPv6 hosts in brackets: `[::1]:50051`)."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class _DelayedPipe:
    """One direction of a connection: read, hold until the release time, write in order."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.delay_s = delay_s
        self._queue: deque[tuple[float, bytes]] = deque()
        self._buffered = 0
        self._changed = asyncio.Event()
        self._eof = False

    async def run(self) -> None:
        sender = asyncio.create_task(self._send())
        try:
            await self._receive()
        finally:
            self._eof = True
            self._changed.set()
            await sender

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        last_release = 0.0
        while True:
            while self._buffered >= MAX_BUFFERED_BYTES:
                self._changed.clear()
                await self._changed.wait()
            data = await self.reader.read(CHUNK_BYTES)
            if not data:
                return
            last_release = max(last_release, loop.time() + self.delay_s)
            self._queue.append((last_release, data))
            self._buffered += len(data)
            self._changed.set()

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    if self._eof:
                        return
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                release, data = self._queue[0]
                wait = release - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._queue.popleft()
                self._buffered -= len(data)
                self._changed.set()
                self.writer.write(data)
                await self.writer.drain()
        finally:
            self.writer.close()


class DelayRelay:
    """Relays TCP connections from `listen` to `upstream`, adding a one-way delay each way."""

    def __init__(
        self,
        listen: Endpoint,
        upstream: Endpoint,
        uplink_delay_ms: float,
        downlink_delay_ms: float | None = None,
    ) -> None:
        if uplink_delay_ms < 0 or (downlink_delay_ms is not None and downlink_delay_ms < 0):
            raise ValueError("delays must be >= 0 ms")
        self.listen = listen
        self.upstream = upstream
        self.uplink_delay_s = uplink_delay_ms / 1000.0
        downlink = uplink_delay_ms if downlink_delay_ms is None else downlink_delay_ms
        self.downlink_delay_s = downlink / 1000.0
        self.port: int | None = None
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._handle, self.listen.host, self.listen.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and cut every relayed connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        handler = asyncio.current_task()
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.upstream.host, self.upstream.port
            )
        except OSError as exc:
            log.warning("upstream %s unreachable: %s", self.upstream, exc)
            client_writer.close()
            return
        pipes = (
            _DelayedPipe(client_reader, server_writer, self.uplink_delay_s),
            _DelayedPipe(server_reader, client_writer, self.downlink_delay_s),
        )
        tasks = [asyncio.create_task(pipe.run()) for pipe in pipes]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            client_writer.close()
            server_writer.close()


class RelayThread:
    """Runs a `DelayRelay` on its own event loop in a background thread (Python API for tests
    and examples). Use as a context manager or call `start()` / `stop()`."""

    def __init__(self, relay: DelayRelay) -> None:
        self.relay = relay
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="delay-relay", daemon=True
        )

    def start(self) -> int:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.relay.start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.relay.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> RelayThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
