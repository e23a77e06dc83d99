"""Per-stream latest-wins mailbox: the newest uplink frame waits, older waiting ones are dropped.

The reader side (`offer`) never blocks and never queues: a frame arriving while another is
still waiting replaces it and the replaced one is counted as dropped. The worker side
(`take`) waits for the next frame or for the end of the stream.
"""

from __future__ import annotations

import asyncio
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
