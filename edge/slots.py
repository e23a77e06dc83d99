"""Latest-wins hand-over points between the edge loop and its network threads.

`AnswerSlot`: the receiver thread replaces its content; the edge loop reads it without ever
waiting for the network (the lock only guards a reference swap).
`UplinkSlot`: the edge loop drops its newest frame in; the sender takes it when the link is
ready. A frame not yet taken when the next arrives is replaced and counted as dropped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class AnswerTrip:
    """Wall-clock times (ns) of one answer's trip, the edge's and the server's (one clock when
    both run on one machine, as `splitcast bench` runs them)."""

    capture: int
    encode_start: int
    """The edge started encoding the frame's uplink image."""
    encode_end: int
    """The encoded frame was handed to gRPC."""
    server_receive: int
    server_taken: int
    server_decoded: int
    model_start: int
    model_end: int
    answer_encoded: int
    server_send: int
    arrival: int
    """The edge's connection thread had the answer message."""
    decoded: int
    """The edge had decoded its tensors."""


@dataclass(frozen=True)
class ReceivedAnswer:
    """A decoded answer (named float32 arrays [1, C, h, w]) and where it came from."""

    source_sequence: int
    conditioned_delay_ticks: float
    tensors: dict[str, np.ndarray]
    received_ns: int
    round_trip_ms: float
    server_ms: float
    payload_bytes: int
    context_sequences: tuple[int, ...] = ()
    trip: AnswerTrip | None = None
    """Every step's time, when the edge still knew when it sent the frame."""


@dataclass(frozen=True)
class OutgoingFrame:
    sequence: int
    capture_time_ns: int
    rgb: np.ndarray
    requested_delay_ticks: float


class AnswerSlot:
    """Holds the freshest received answer; `latest()` never blocks on the network."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: ReceivedAnswer | None = None

    def put(self, item: ReceivedAnswer) -> None:
        with self._lock:
            if self._item is None or item.source_sequence >= self._item.source_sequence:
                self._item = item

    def latest(self) -> ReceivedAnswer | None:
        with self._lock:
            return self._item


class UplinkSlot(Generic[T]):
    """Single waiting item, replaced by newer ones; `take` waits up to a timeout."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> T | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item
