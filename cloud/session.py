"""Per-stream state of the server's reading: the latest-wins mailbox (the newest uplink frame
waits, older waiting ones are dropped) and the stream's read rate.

The reader side (`offer`) never blocks and never queues: a frame arriving while another is
still waiting replaces it and the replaced one is counted as dropped. The worker side
(`take`) waits for the next frame or for the end of the stream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Closed:
    error: BaseException | None


class LatestMailbox(Generic[T]):
    """Holds at most one item; asyncio-only (one event loop)."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._closed: _Closed | None = None
        self._ready = asyncio.Event()
        self.dropped = 0

    def offer(self, item: T) -> None:
        if self._item is not None:
            self.dropped += 1
        self._item = item
        self._ready.set()

    def close(self, error: BaseException | None = None) -> None:
        """No more items; `take` raises `error` if given, else returns None once drained."""
        self._closed = _Closed(error)
        self._ready.set()

    async def take(self) -> T | None:
        while self._item is None:
            if self._closed is not None:
                if self._closed.error is not None:
                    raise self._closed.error
                return None
            self._ready.clear()
            await self._ready.wait()
        item, self._item = self._item, None
        return item


class ReadRate:
    """How many frames a stream had read in the last second, to tell one that sends at its
    read cap (`cap` frames a second; 0: no cap, never at it)."""

    AT_CAP = 0.9
    """The share of the cap from which a stream counts as sending at it."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self._times: deque[float] = deque()

    def read(self, now: float) -> None:
        self._times.append(now)
        while self._times[0] < now - 1.0:
            self._times.popleft()

    @property
    def at_cap(self) -> bool:
        return self.cap > 0 and len(self._times) >= self.AT_CAP * self.cap
