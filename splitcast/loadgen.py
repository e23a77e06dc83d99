"""`splitcast loadgen`: many real edge streams against one server, without the edge's model.

Each stream is a real `CloudConnection` (the edge's own uplink and downlink: JPEG frames of
the built-in moving scene, encoded as the server's `Info` asks, answers decoded), paced at
`fps`; a flooding stream offers a new frame every millisecond instead (as fast as its link
takes them). What a server does under load is then counted from the edges' side: answers per
second, the answer latency (capture to arrival), frames the server dropped (latest wins),
errors by kind, reconnects. Flooding streams are reported apart from the paced ones, so the
table shows what a well-behaved client keeps while another floods.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from splitcast.edge.connection import CloudConnection, ExpectedServer
from splitcast.edge.credentials import ClientSecurity
from splitcast.edge.slots import OutgoingFrame, ReceivedAnswer
from splitcast.edge.sources import MovingSceneSource
from splitcast.models.codec import Codec, get_codec
from splitcast.models.codec_names import PROBABILITY_CODEC, STATELESS_CODECS
from splitcast.soak import REPLY_TIMEOUT_S, MalformedCounts, MalformedSender, MemoryWatch
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc
from splitcast.v1.wire import wire_tensors

FLOOD_INTERVAL_S = 0.001
REQUESTED_DELAY_TICKS = 3.0


@dataclass(frozen=True)
class LoadOptions:
    """What `splitcast loadgen` runs."""

    server: str
    streams: int = 4
    duration_s: float = 30.0
    fps: float = 30.0
    flood: int = 0
    """How many of the streams flood instead of pacing."""
    security: ClientSecurity | None = None
    malformed_rate: float = 0.0
    """Malformed messages per second in all (`splitcast.soak`), beside the streams."""
    malformed_streams: int = 4
    """How many senders share `malformed_rate` (a server reads each stream at a capped rate)."""
    metrics_url: str | None = None
    """The server's `/metrics` URL: its resident memory is sampled once a second."""
    warm_up_s: float = 10.0
    """When the memory reference is taken (growth after it is what a leak looks like)."""


@dataclass
class _Stream:
    flooding: bool
    connection: CloudConnection | None = None
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, answer: ReceivedAnswer) -> None:
        with self.lock:
            self.latencies.append(answer.round_trip_ms)


def server_expectations(target: str, security: ClientSecurity | None) -> ExpectedServer:
    """Whatever the server runs, as an edge would have to expect it."""
    security = security or ClientSecurity()
    with security.channel(target, []) as channel:
        info = pb_grpc.SplitInferenceStub(channel).Info(
            pb.InfoRequest(), timeout=10, metadata=security.metadata
        )
    expected = ExpectedServer(
        info.model_name,
        info.model_version,
        info.combiner,
        wire_tensors(list(info.tensors)),
        (info.local_input.height, info.local_input.width),
        info.fps,
    )
    return expected


def _codecs() -> dict[str, Codec]:
    """Decoders for one stream (each connection decodes on its own thread, and a zstandard
    decompressor must not be shared between threads); the learned codec needs the
    checkpoint, so servers sending it are not supported here."""
    return {name: get_codec(name) for name in (*STATELESS_CODECS, PROBABILITY_CODEC)}


def run_load(options: LoadOptions) -> dict[str, Any]:
    """Run the streams for `duration_s` once all are connected; the report (see the module)."""
    try:
        expected = server_expectations(options.server, options.security)
    except grpc.RpcError as exc:
        raise OSError(f"no server at {options.server}: {exc.code().name} {exc.details()}") from None
    frames = list(MovingSceneSource(num_frames=60).frames())
    streams = [_Stream(flooding=index < options.flood) for index in range(options.streams)]
    for stream in streams:
        stream.connection = CloudConnection(
            options.server,
            expected,
            _codecs(),
            security=options.security,
            on_answer=stream.answered,
        )
        stream.connection.start()
    stop = threading.Event()
    malformed = MalformedCounts()
    memory = MemoryWatch(options.metrics_url) if options.metrics_url else None
    try:
        _wait_connected(streams)
        senders = [
            threading.Thread(target=_send, args=(s, frames, options.fps, stop), daemon=True)
            for s in streams
        ]
        senders += [sender.thread for sender in _malformed_senders(options, malformed, stop)]
        start = time.monotonic()
        if memory is not None:
            memory.start()
        for sender in senders:
            sender.start()
        stop.wait(options.duration_s)
        stop.set()
        elapsed = time.monotonic() - start
        for sender in senders:
            sender.join(timeout=REPLY_TIMEOUT_S)
    finally:
        stop.set()
        if memory is not None:
            memory.stop()
        for stream in streams:
            assert stream.connection is not None
            stream.connection.stop()
    report = _report(options, streams, elapsed)
    if options.malformed_rate > 0:
        report["malformed"] = malformed.report()
    if memory is not None:
        report["server_memory"] = memory.report(options.warm_up_s)
    report["server_survived"] = _answers_info(options)
    return report


def _malformed_senders(
    options: LoadOptions, counts: MalformedCounts, stop: threading.Event
) -> list[MalformedSender]:
    if options.malformed_rate <= 0:
        return []
    rate = options.malformed_rate / options.malformed_streams
    security = options.security or ClientSecurity()
    longest = options.duration_s + 2 * REPLY_TIMEOUT_S
    return [
        MalformedSender(options.server, security, rate, counts, stop, longest)
        for _ in range(options.malformed_streams)
    ]


def _answers_info(options: LoadOptions) -> bool:
    """Whether the server still answers `Info` after the load (it did not die or stall)."""
    try:
        server_expectations(options.server, options.security)
    except grpc.RpcError:
        return False
    return True


def _wait_connected(streams: Sequence[_Stream], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    for stream in streams:
        assert stream.connection is not None
        while not stream.connection.stats.connected:
            if time.monotonic() > deadline:
                error = stream.connection.stats.last_error or "no answer"
                raise OSError(f"a stream could not connect within {timeout_s:.0f} s: {error}")
            time.sleep(0.02)


def _send(stream: _Stream, frames: list[np.ndarray], fps: float, stop: threading.Event) -> None:
    """Offer frames paced at `fps` (or flooding) until `stop`."""
    assert stream.connection is not None
    interval = FLOOD_INTERVAL_S if stream.flooding else 1.0 / fps
    sequence = 0
    due = time.monotonic()
    while not stop.is_set():
        rgb = frames[sequence % len(frames)]
        frame = OutgoingFrame(sequence, time.time_ns(), rgb, REQUESTED_DELAY_TICKS)
        stream.connection.submit(frame)
        sequence += 1
        due += interval
        stop.wait(max(0.0, due - time.monotonic()))


def _group(streams: Sequence[_Stream], elapsed: float) -> dict[str, Any] | None:
    """Answers per second, latency p50/p99 and counts of a group of streams."""
    if not streams:
        return None
    latencies = sorted(value for s in streams for value in s.latencies)
    stats = [s.connection.stats for s in streams if s.connection is not None]
    answers = sum(stat.answers_received for stat in stats)
    sent = sum(stat.frames_sent for stat in stats)
    return {
        "streams": len(streams),
        "answers_per_s": round(answers / elapsed, 2),
        "answers_per_s_per_stream": round(answers / elapsed / len(streams), 2),
        "answered_fraction_of_sent": round(answers / sent, 3) if sent else 0.0,
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies else None,
        "frames_sent": sent,
        "server_dropped": sum(stat.server_dropped for stat in stats),
        "errors": {
            "frame_errors": sum(stat.frame_errors for stat in stats),
            "decode_errors": sum(stat.decode_errors for stat in stats),
            "reconnects": sum(max(stat.connects - 1, 0) for stat in stats),
        },
    }


def _report(options: LoadOptions, streams: Sequence[_Stream], elapsed: float) -> dict[str, Any]:
    return {
        "server": options.server,
        "streams": options.streams,
        "flooding": options.flood,
        "fps": options.fps,
        "duration_s": round(elapsed, 2),
        "paced": _group([s for s in streams if not s.flooding], elapsed),
        "flooding_streams": _group([s for s in streams if s.flooding], elapsed),
        "all": _group(streams, elapsed),
    }


def format_soak(report: dict[str, Any]) -> str:
    """The soak's lines: malformed messages and how they were answered, memory, survival."""
    lines = [f"server survived: {'yes' if report['server_survived'] else 'NO'}"]
    malformed = report.get("malformed")
    if malformed:
        outcomes = ", ".join(f"{n} {name}" for name, n in sorted(malformed["outcomes"].items()))
        lines.append(
            f"malformed: {malformed['sent']} sent, answered {malformed['answered_fraction']:.2%} "
            f"with a FrameError or INVALID_ARGUMENT ({outcomes})"
        )
    memory = report.get("server_memory")
    if memory and "end_mb" in memory:
        lines.append(
            f"server RSS: {memory['start_mb']:.0f} MB at start, {memory['after_warm_up_mb']:.0f} "
            f"MB after {memory['warm_up_s']:g} s, {memory['end_mb']:.0f} MB at the end "
            f"({memory['growth_after_warm_up']:+.1%} after warm-up)"
        )
    elif memory:
        lines.append(f"server RSS: not readable from {memory['url']}")
    return "\n".join(lines)


def format_load(report: dict[str, Any]) -> str:
    """The printed table: one row per group of streams."""
    lines = [
        f"splitcast loadgen: {report['streams']} streams ({report['flooding']} flooding) at "
        f"{report['fps']:g} fps for {report['duration_s']:.0f} s against {report['server']}",
        "group        streams  answers/s  per stream  latency p50  p99 (ms)  dropped  errors",
    ]
    for name in ("paced", "flooding_streams", "all"):
        group = report[name]
        if group is None:
            continue
        errors = sum(group["errors"].values())
        p50 = group["latency_p50_ms"] if group["latency_p50_ms"] is not None else "-"
        p99 = group["latency_p99_ms"] if group["latency_p99_ms"] is not None else "-"
        lines.append(
            f"{name:12} {group['streams']:>7} {group['answers_per_s']:>10} "
            f"{group['answers_per_s_per_stream']:>11} {p50:>12} {p99:>9} "
            f"{group['server_dropped']:>8} {errors:>7}"
        )
    return "\n".join(lines)
