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
    """Whether a stream floods: for its last `WINDOW` reads at the capped pace, its sender
    already had the next frame waiting (`cap` frames a second; 0: no cap, never flooding).
    An edge paced by its camera below the cap makes the reader wait for every frame.
    A stream whose last frame cost more than one model input (`uplink.size_over_input`: far
    larger than the input the edge is told in `Info`) is read as a flooding one, and a frame
    of `size` inputs is paid for with `size` times the interval: reading and decoding it cost
    in proportion."""

    WINDOW = 15
    WAITING_S = 0.002
    """A read that took less than this found its frame already waiting."""
    FLOOD_SHARE = 1 / 6
    """A flooding stream is read at this share of the cap."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self._waiting: deque[bool] = deque(maxlen=self.WINDOW)
        self._size = 1.0

    def read(self, waited_s: float, size: float = 1.0) -> None:
        """One frame of `size` (its pixels over the model input's, at least 1) read after
        waiting `waited_s` for it."""
        self._waiting.append(waited_s < self.WAITING_S)
        self._size = size

    @property
    def flooding(self) -> bool:
        return self.cap > 0 and len(self._waiting) == self.WINDOW and all(self._waiting)

    @property
    def interval_s(self) -> float:
        """The pace to read the stream at (0: as fast as frames come)."""
        if not self.cap:
            return 0.0
        share = self.FLOOD_SHARE if self.flooding or self._size > 1.0 else 1.0
        return self._size / (self.cap * share)
