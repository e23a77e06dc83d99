"""Stepping the frames of several streams together, on the one model thread.

Each stream has at most one frame with the model at a time (its loop awaits the answer before
taking its next frame, latest wins), so the queue holds at most one item per stream and
every stream gets a place in each batch it is waiting for: no stream can take another's turn.
Items of a lower `priority` number go first (arrival order among equals): the server gives
streams that send at their read cap priority 1, so a flooding client is served only when no
well-behaved stream is waiting.
When the model thread is free, the waiting items go in one batch of up to `max_batch`; when
fewer are waiting, the batch waits up to `max_wait_s` from its first item's arrival for more,
never longer. With `max_batch` 1 every frame is stepped alone, as before batching existed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

YIELD_S = 0.02
"""How long yielding items leave the model to other streams' frames that may be on their way."""

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Runs `step(items) -> results` (same order) on `executor` for batches of waiting items;
    asyncio-only (one event loop)."""

    def __init__(
        self,
        step: Callable[[Sequence[Item]], list[Result]],
        executor: Executor,
        max_batch: int = 1,
        max_wait_s: float = 0.0,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max batch {max_batch} and max wait {max_wait_s} s: need >= 1, >= 0")
        self.step = step
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._waiting: list[tuple[Item, asyncio.Future[Result], float, int]] = []
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def run(self, item: Item, priority: int = 0) -> Result:
        """`item`'s result, once its batch has been stepped (lower `priority` first)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future, time.monotonic(), priority))
        self._arrived.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return await future

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            await self._gather()
            self._waiting.sort(key=lambda entry: (entry[3], entry[2]))
            taken = [entry for entry in self._waiting[: self.max_batch] if not entry[1].done()]
            self._waiting = self._waiting[self.max_batch :]
            if not taken:
                continue
            try:
                results = await loop.run_in_executor(
                    self.executor, self.step, [item for item, _, _, _ in taken]
                )
            except Exception as exc:
                for _, future, _, _ in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future, _, _), result in zip(taken, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _gather(self) -> None:
        """Wait for a full batch, but no longer than `max_wait_s` after its first item
        arrived; while only yielding items (priority above 0) wait, give the other streams
        `YIELD_S` to come back first (a stream just answered needs a moment to send its next
        frame)."""
        full_by = self._waiting[0][2] + self.max_wait_s
        yield_by = time.monotonic() + YIELD_S
        while True:
            deadlines = [full_by] if len(self._waiting) < self.max_batch else []
            if min(entry[3] for entry in self._waiting) > 0:
                deadlines.append(yield_by)
            remaining = max(deadlines, default=0.0) - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return
