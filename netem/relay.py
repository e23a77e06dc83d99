"""A user-space TCP relay that shapes traffic in each direction (the kernel here has no netem).

Every chunk read from one side first waits for the wire (bandwidth cap or Mahimahi trace,
shared by all connections of that direction), then travels its sampled one-way delay (base
plus jitter, see `splitcast.netem.shaping`). Release times within a connection never
decrease, so bytes are never reordered: when jitter exceeds the mean, a chunk that drew a
short delay waits behind the one before it, as in a real TCP stream. Reading pauses while
more than `queue_bytes` wait in a direction (a bounded bottleneck queue), so a slow link or a
peer that stops reading pushes back on the sender the way TCP does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from splitcast.netem.shaping import (
    ConditionTrace,
    ConditionWire,
    DelaySampler,
    DirectionSpec,
    RateWire,
    TraceWire,
    UnlimitedWire,
)

log = logging.getLogger("splitcast.netem")

CHUNK_BYTES = 64 * 1024
SPIN_S = 0.002
Wire = UnlimitedWire | RateWire | TraceWire | ConditionWire


class _Direction:
    """A direction's shared state: its wire and its delay sampler, plus the per-chunk log."""

    def __init__(self, name: str, spec: DirectionSpec, seed: int, log: IO[str] | None) -> None:
        self.name = name
        self.spec = spec
        self.sampler = DelaySampler(spec.delay, seed)
        self._loss_rng = np.random.default_rng([seed, 1])
        self.conditions = ConditionTrace.load(spec.conditions) if spec.conditions else None
        if self.conditions is not None:
            self.wire: Wire = ConditionWire(self.conditions)
        elif spec.trace is not None:
            self.wire = TraceWire.load(spec.trace)
        elif spec.rate_mbit is not None:
            self.wire = RateWire(spec.rate_mbit)
        else:
            self.wire = UnlimitedWire()
        self._log = log

    def schedule(
        self, arrival_s: float, size: int, not_before_s: float
    ) -> tuple[float, dict[str, object] | None]:
        """Release time of a chunk read at `arrival_s`, never before `not_before_s`, and its
        log record (None without a log) for `sent` to complete."""
        on_wire = self.wire.transmit(arrival_s, size)
        base_ms = self.conditions.at(arrival_s).delay_ms if self.conditions else None
        sampled = self.sampler.next_s(base_ms)
        loss = self.spec.loss
        stalled = loss.stall_probability > 0 and self._loss_rng.random() < loss.stall_probability
        release = max(not_before_s, on_wire + sampled + (loss.rto_ms / 1000 if stalled else 0))
        if self._log is None:
            return release, None
        record: dict[str, object] = {
            "direction": self.name,
            "bytes": size,
            "sampled_delay_ms": round(sampled * 1000, 3),
            "applied_delay_ms": round((release - arrival_s) * 1000, 3),
            "stalled": bool(stalled),
        }
        return release, record

    def sent(self, record: dict[str, object] | None, measured_s: float) -> None:
        """Log a chunk once written, with the delay measured from its read to its write."""
        if self._log is not None and record is not None:
            record["measured_delay_ms"] = round(measured_s * 1000, 3)
            self._log.write(json.dumps(record) + "\n")

    def drops(self, interval_s: float) -> bool:
        """Whether the connection breaks during `interval_s` (Poisson, drops_per_minute)."""
        rate = self.spec.loss.drops_per_minute / 60.0
        return rate > 0 and self._loss_rng.random() < -math.expm1(-rate * interval_s)


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


class _LinkDropped(Exception):
    """The emulated link broke the connection (LossSpec.drops_per_minute)."""


class _DelayedPipe:
    """One direction of a connection: read, hold until the release time, write in order."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: _Direction
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.direction = direction
        self._queue: deque[tuple[float, bytes, float, dict[str, object] | None]] = deque()
        self._buffered = 0
        self._changed = asyncio.Event()
        self._eof = False

    async def run(self) -> None:
        sender = asyncio.create_task(self._send())
        try:
            await self._receive()
        except _LinkDropped:
            sender.cancel()
            raise
        finally:
            self._eof = True
            self._changed.set()
            await asyncio.gather(sender, return_exceptions=True)

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        last_release = 0.0
        last_read = loop.time()
        while True:
            while self._buffered >= self.direction.spec.queue_bytes:
                self._changed.clear()
                await self._changed.wait()
            data = await self.reader.read(CHUNK_BYTES)
            if not data:
                return
            if self.direction.drops(loop.time() - last_read):
                raise _LinkDropped(self.direction.name)
            last_read = loop.time()
            last_release, record = self.direction.schedule(last_read, len(data), last_release)
            self._queue.append((last_release, data, last_read, record))
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
                release, data, arrival, record = self._queue[0]
                await _sleep_until(loop, release)
                self._queue.popleft()
                self._buffered -= len(data)
                self._changed.set()
                self.writer.write(data)
                self.direction.sent(record, loop.time() - arrival)
                await self.writer.drain()
        finally:
            self.writer.close()


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Sleep to within a fraction of a millisecond of `deadline`: the event loop's timers wake
    up one to two milliseconds late (epoll rounds timeouts up to whole milliseconds, then the
    thread has to be scheduled), so the last two milliseconds are spent yielding."""
    while (wait := deadline - loop.time()) > 0:
        await asyncio.sleep(wait - SPIN_S if wait > SPIN_S else 0)


class DelayRelay:
    """Relays TCP connections from `listen` to `upstream`, shaping each direction."""

    def __init__(
        self,
        listen: Endpoint,
        upstream: Endpoint,
        uplink: DirectionSpec,
        downlink: DirectionSpec | None = None,
        seed: int = 0,
        log_path: Path | None = None,
    ) -> None:
        self.listen = listen
        self.upstream = upstream
        self._log = log_path.open("w", encoding="utf-8") if log_path else None
        self.uplink = _Direction("uplink", uplink, seed, self._log)
        self.downlink = _Direction("downlink", downlink or uplink, seed + 1, self._log)
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
        if self._log is not None:
            self._log.close()

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
            _DelayedPipe(client_reader, server_writer, self.uplink),
            _DelayedPipe(server_reader, client_writer, self.downlink),
        )
        tasks = [asyncio.create_task(pipe.run()) for pipe in pipes]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if isinstance(task.exception(), _LinkDropped):
                    log.info("emulated link dropped a connection (%s)", task.exception())
        except asyncio.CancelledError:
            log.debug("relay closing: connection from the edge cut")
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
