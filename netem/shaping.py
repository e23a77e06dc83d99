"""What one direction of an emulated link does to each chunk of bytes: how long it waits for
the wire (bandwidth, or a Mahimahi delivery trace) and how long it then travels (base delay
plus jitter). Pure timing arithmetic, deterministic under a seed; the relay applies it.

Jitter distributions are standardised to mean 0 and standard deviation 1 and then scaled by
`jitter_ms`, so `--jitter-ms` means the same spread whatever the shape:
- `uniform`: flat on [-sqrt(3), sqrt(3)];
- `normal`: Gaussian;
- `pareto`: Lomax (Pareto II) with shape 3, shifted to mean 0: a long tail of late chunks;
- `paretonormal`: 0.5 x normal + sqrt(0.75) x pareto (Gaussian body, heavy right tail).
With `correlation` c each draw is c x previous + sqrt(1 - c^2) x fresh (an AR(1) process, so
the spread stays `jitter_ms`; the marginal is exact for `normal` only). A chunk's delay is
never negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
PARETO_SHAPE = 3.0
MAHIMAHI_PACKET_BYTES = 1500
DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024


class ShapingError(ValueError):
    """A link setting or trace that cannot be used."""


def standard_jitter(distribution: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` draws with mean 0 and standard deviation 1 of the named distribution."""
    if distribution == "uniform":
        return rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), size)
    if distribution == "normal":
        return rng.standard_normal(size)
    if distribution == "pareto":
        return _standard_pareto(rng, size)
    if distribution == "paretonormal":
        normal = rng.standard_normal(size)
        return 0.5 * normal + math.sqrt(0.75) * _standard_pareto(rng, size)
    raise ShapingError(f"unknown jitter distribution {distribution!r}; choose {DISTRIBUTIONS}")


def _standard_pareto(rng: np.random.Generator, size: int) -> np.ndarray:
    # numpy's pareto(a) is Lomax with scale 1: mean 1/(a-1), variance a/((a-1)^2 (a-2)).
    a = PARETO_SHAPE
    mean = 1.0 / (a - 1.0)
    std = math.sqrt(a / ((a - 1.0) ** 2 * (a - 2.0)))
    return (rng.pareto(a, size) - mean) / std


@dataclass(frozen=True)
class DelaySpec:
    """Base one-way delay and jitter of one direction."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    distribution: str = "normal"
    correlation: float = 0.0

    def __post_init__(self) -> None:
        if not self.delay_ms >= 0 or not self.jitter_ms >= 0:
            raise ShapingError("delay and jitter must be >= 0 ms")
        if self.distribution not in DISTRIBUTIONS:
            raise ShapingError(
                f"unknown jitter distribution {self.distribution!r}; choose {DISTRIBUTIONS}"
            )
        if not 0.0 <= self.correlation < 1.0:
            raise ShapingError(f"correlation must be in [0, 1), got {self.correlation}")


@dataclass(frozen=True)
class LossSpec:
    """Packet loss as a TCP stream experiences it. Over TCP a lost segment is not a gap in the
    data but a stall: the bytes arrive one retransmission timeout late, and everything behind
    them waits too (head-of-line blocking). `stall_probability` is the chance that a relayed
    chunk suffers one such stall of `rto_ms` (Linux's minimum RTO is 200 ms). Sustained loss
    or a handover can also break the connection: `drops_per_minute` cuts it at a Poisson rate,
    and the client has to reconnect."""

    stall_probability: float = 0.0
    rto_ms: float = 200.0
    drops_per_minute: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.stall_probability <= 1.0:
            raise ShapingError(f"stall probability must be in [0, 1], got {self.stall_probability}")
        if not self.rto_ms >= 0 or not self.drops_per_minute >= 0:
            raise ShapingError("RTO and drop rate must be >= 0")


@dataclass(frozen=True)
class DirectionSpec:
    """Conditions of one direction: delay and jitter, bandwidth or a delivery trace, queue,
    loss; `conditions` (a CSV of recorded delay and bandwidth over time) replaces the base
    delay and the bandwidth while the jitter and loss settings still apply."""

    delay: DelaySpec = field(default_factory=DelaySpec)
    rate_mbit: float | None = None
    trace: Path | None = None
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    loss: LossSpec = field(default_factory=LossSpec)
    conditions: Path | None = None


class DelaySampler:
    """Draws each chunk's one-way delay (seconds) from a `DelaySpec`."""

    def __init__(self, spec: DelaySpec, seed: int = 0) -> None:
        self.spec = spec
        self._rng = np.random.default_rng(seed)
        self._previous = 0.0

    def next_s(self, base_ms: float | None = None) -> float:
        """The next delay; `base_ms` replaces the spec's base delay (condition traces)."""
        spec = self.spec
        base = spec.delay_ms if base_ms is None else base_ms
        if spec.jitter_ms == 0:
            return base / 1000.0
        fresh = float(standard_jitter(spec.distribution, self._rng, 1)[0])
        c = spec.correlation
        value = c * self._previous + math.sqrt(1.0 - c * c) * fresh
        self._previous = value
        return max(0.0, base + spec.jitter_ms * value) / 1000.0


class UnlimitedWire:
    """No bandwidth limit: a chunk is on the wire the moment it arrives."""

    def transmit(self, arrival_s: float, size: int) -> float:
        return arrival_s


class RateWire:
    """A fixed bit rate: chunks are serialised one after another (first come, first served)."""

    def __init__(self, rate_mbit: float) -> None:
        if not rate_mbit > 0:
            raise ShapingError(f"bandwidth must be > 0 Mbit/s, got {rate_mbit}")
        self.bytes_per_s = rate_mbit * 1e6 / 8.0
        self._free_at = 0.0

    def transmit(self, arrival_s: float, size: int) -> float:
        """Time the last byte of a `size`-byte chunk arriving at `arrival_s` is sent."""
        start = max(arrival_s, self._free_at)
        self._free_at = start + size / self.bytes_per_s
        return self._free_at


class TraceWire:
    """Mahimahi packet-delivery trace: each line is a millisecond at which one 1500-byte
    packet may leave; the trace repeats after its last line. Time 0 is the first chunk."""

    def __init__(self, opportunities_ms: list[int]) -> None:
        if not opportunities_ms:
            raise ShapingError("the trace has no delivery opportunities")
        self._times_s = np.asarray(sorted(opportunities_ms), dtype=np.float64) / 1000.0
        self._period_s = max(self._times_s[-1], 0.001)
        self._next = 0
        self._cycle = 0
        self._left_in_packet = 0
        self._packet_s = 0.0
        self._origin: float | None = None

    @classmethod
    def load(cls, path: Path) -> TraceWire:
        if not path.is_file():
            raise ShapingError(f"trace file not found: {path}")
        values: list[int] = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.strip()
            if not text:
                continue
            if not text.isdigit():
                raise ShapingError(f"{path}:{number}: expected a whole millisecond, got {text!r}")
            values.append(int(text))
        return cls(values)

    def mean_rate_mbit(self) -> float:
        return len(self._times_s) * MAHIMAHI_PACKET_BYTES * 8 / self._period_s / 1e6

    def _opportunity_s(self) -> float:
        return self._cycle * self._period_s + self._times_s[self._next]

    def _advance(self) -> None:
        self._next += 1
        if self._next == len(self._times_s):
            self._next = 0
            self._cycle += 1

    def transmit(self, arrival_s: float, size: int) -> float:
        """Time the last byte of the chunk leaves. A packet's unused capacity serves later
        chunks only if they arrive before its opportunity; otherwise it is lost, as in
        Mahimahi."""
        if self._origin is None:
            self._origin = arrival_s
        now = arrival_s - self._origin
        if self._left_in_packet and now > self._packet_s:
            self._left_in_packet = 0
        sent = now
        while size > 0:
            if self._left_in_packet == 0:
                while self._opportunity_s() < now:
                    self._advance()
                self._packet_s = self._opportunity_s()
                self._left_in_packet = MAHIMAHI_PACKET_BYTES
                self._advance()
            used = min(size, self._left_in_packet)
            self._left_in_packet -= used
            size -= used
            sent = self._packet_s
        return self._origin + max(sent, now)


@dataclass(frozen=True)
class Condition:
    """Link state from `start_s` on: base one-way delay and bandwidth (None = unlimited)."""

    start_s: float
    delay_ms: float
    rate_mbit: float | None


class ConditionTrace:
    """Recorded conditions as a CSV with the header `time_s,delay_ms,bandwidth_mbit`: each row
    holds from its time until the next row's; the last row holds to the end of the run. An
    empty or 0 bandwidth means unlimited. Time 0 is the first chunk."""

    def __init__(self, rows: list[Condition]) -> None:
        if not rows or rows[0].start_s != 0:
            raise ShapingError("a condition trace must start with a row at time_s 0")
        self.rows = rows
        self._starts = np.array([row.start_s for row in rows])
        self._origin: float | None = None

    @classmethod
    def load(cls, path: Path) -> ConditionTrace:
        if not path.is_file():
            raise ShapingError(f"condition trace not found: {path}")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not lines or [h.strip() for h in lines[0].split(",")] != [
            "time_s",
            "delay_ms",
            "bandwidth_mbit",
        ]:
            raise ShapingError(f"{path}: the first line must be time_s,delay_ms,bandwidth_mbit")
        rows: list[Condition] = []
        for number, line in enumerate(lines[1:], 2):
            try:
                time_text, delay_text, rate_text = (v.strip() for v in line.split(","))
                start, delay = float(time_text), float(delay_text)
                rate = float(rate_text) if rate_text else 0.0
            except ValueError:
                raise ShapingError(
                    f"{path}:{number}: expected three numbers, got {line!r}"
                ) from None
            if delay < 0 or rate < 0 or (rows and start <= rows[-1].start_s):
                raise ShapingError(
                    f"{path}:{number}: times must increase, delay and bandwidth be >= 0"
                )
            rows.append(Condition(start, delay, rate or None))
        return cls(rows)

    def at(self, now_s: float) -> Condition:
        """Conditions at absolute time `now_s` (the first call sets time 0)."""
        if self._origin is None:
            self._origin = now_s
        index = int(np.searchsorted(self._starts, now_s - self._origin, side="right")) - 1
        return self.rows[max(index, 0)]


class ConditionWire:
    """Serialises chunks at the bandwidth a `ConditionTrace` gives when each one starts."""

    def __init__(self, trace: ConditionTrace) -> None:
        self.trace = trace
        self._free_at = 0.0

    def transmit(self, arrival_s: float, size: int) -> float:
        start = max(arrival_s, self._free_at)
        rate = self.trace.at(start).rate_mbit
        self._free_at = start if rate is None else start + size * 8 / (rate * 1e6)
        return self._free_at
