"""Warnings that repeat per frame, logged without flooding the log.

A client sending thousands of bad frames (or an edge losing its server for minutes) would
otherwise write one line per frame; this keeps the first line of each kind and then at most one
line per interval saying how many were suppressed. Torch-free: the edge imports it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable


class RateLimitedLog:
    """Logs the first message of each key, then at most one per `interval_s` with a count.

    Keys are whatever groups repeats (a stream's peer, a kind of failure); `forget(key)` drops a
    key's state when its source ends, so the table stays as small as the live sources.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log `msg % args` at `level` unless `key` logged within the interval; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg = f"{msg} (and {suppressed} like it suppressed)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        """`log` at WARNING, the level repeated per-frame trouble is reported at."""
        return self.log(logging.WARNING, key, msg, *args)

    def forget(self, key: Hashable) -> int:
        """Drop `key`'s state; returns how many of its lines were suppressed since the last one."""
        with self._lock:
            self._last.pop(key, None)
            return self._suppressed.pop(key, 0)
