"""`splitcast loadgen --malformed-rate`: malformed traffic beside the well-behaved streams, and the
server's memory over time.

Each malformed sender keeps one stream open and sends, paced, frames that are valid protobuf
but unusable (an image that is not one, a format the server does not take, a size far beyond
the model's input, a delay out of range), reading the reply to each; every few messages it
also opens a call and sends bytes that are no protobuf message at all. Every malformed
message must be answered: a FrameError on its stream, or the call ended with
INVALID_ARGUMENT. The server's resident memory is read from its `/metrics` endpoint
(prometheus-client's process collector) once a second, so a leak shows as growth after warm-up.
"""

from __future__ import annotations

import queue
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from splitcast.edge.credentials import ClientSecurity
from splitcast.v1 import splitcast_pb2 as pb

STREAM_METHOD = "/splitcast.v1.SplitInference/Stream"
FRAME_KINDS = ("not_an_image", "unsupported_format", "oversized", "bad_delay")
NOT_PROTOBUF = "not_protobuf"
NOT_PROTOBUF_EVERY = 5
"""One message in this many is raw bytes on a call of its own (the rest share a stream)."""
REPLY_TIMEOUT_S = 10.0
RSS_PATTERN = re.compile(r"^process_resident_memory_bytes (\S+)$", re.MULTILINE)


def malformed_frame(kind: str, sequence: int) -> pb.UplinkFrame:
    """A frame protobuf parses but the server must refuse with a FrameError."""
    image = pb.EncodedImage(format=pb.IMAGE_FORMAT_JPEG, data=b"\xff\xd8 no jpeg", width=64)
    image.height, delay = 64, 3.0
    if kind == "unsupported_format":
        image.format = 99
    elif kind == "oversized":
        image.width, image.height = 8192, 8192
    elif kind == "bad_delay":
        delay = float("nan")
    return pb.UplinkFrame(sequence=sequence, image=image, requested_delay_ticks=delay)


@dataclass
class MalformedCounts:
    """What the malformed senders sent, and how each message was answered."""

    sent: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.sent[kind] += 1
            self.outcomes[outcome] += 1

    def report(self) -> dict[str, Any]:
        sent = sum(self.sent.values())
        answered = self.outcomes["frame_error"] + self.outcomes["invalid_argument"]
        return {
            "sent": sent,
            "by_kind": dict(self.sent),
            "outcomes": dict(self.outcomes),
            "answered_fraction": round(answered / sent, 4) if sent else None,
        }


class MalformedSender:
    """One thread sending malformed messages at `rate` per second until `stop` (its stream
    lasts at most `longest_s`)."""

    def __init__(
        self,
        target: str,
        security: ClientSecurity,
        rate: float,
        counts: MalformedCounts,
        stop: threading.Event,
        longest_s: float,
    ) -> None:
        self.target, self.security, self.rate = target, security, rate
        self.counts, self.stop, self.longest_s = counts, stop, longest_s
        self.thread = threading.Thread(target=self._run, name="malformed-sender", daemon=True)

    def _run(self) -> None:
        with self.security.channel(self.target, []) as channel:
            stream = channel.stream_stream(
                STREAM_METHOD,
                request_serializer=pb.UplinkFrame.SerializeToString,
                response_deserializer=pb.DownlinkMessage.FromString,
            )
            raw = channel.stream_stream(
                STREAM_METHOD,
                request_serializer=lambda data: data,
                response_deserializer=pb.DownlinkMessage.FromString,
            )
            sequence, due = 0, time.monotonic()
            outbox: queue.Queue[pb.UplinkFrame | None] = queue.Queue()
            replies = stream(
                _drain(outbox), metadata=self.security.metadata, timeout=self.longest_s
            )
            try:
                while not self.stop.is_set():
                    if sequence % NOT_PROTOBUF_EVERY == NOT_PROTOBUF_EVERY - 1:
                        self.counts.record(NOT_PROTOBUF, self._raw(raw, sequence))
                    else:
                        kind = FRAME_KINDS[sequence % len(FRAME_KINDS)]
                        outbox.put(malformed_frame(kind, sequence))
                        self.counts.record(kind, _reply_outcome(replies))
                    sequence += 1
                    due += 1.0 / self.rate
                    self.stop.wait(max(0.0, due - time.monotonic()))
            except grpc.RpcError as exc:  # the shared stream ended: count why, stop sending
                self.counts.record("stream_ended", exc.code().name.lower())
            finally:
                outbox.put(None)
                replies.cancel()

    def _raw(self, raw: grpc.StreamStreamMultiCallable, sequence: int) -> str:
        """Send bytes that are no protobuf message (field 0 with wire type 7 cannot parse)."""
        payload = b"\x07" + sequence.to_bytes(8, "little") * 4
        call = raw(iter([payload]), metadata=self.security.metadata, timeout=REPLY_TIMEOUT_S)
        try:
            for _ in call:
                return "answered_garbage"
        except grpc.RpcError as exc:
            return exc.code().name.lower()
        return "ended_ok"


def _drain(outbox: queue.Queue[pb.UplinkFrame | None]) -> Iterator[pb.UplinkFrame]:
    while (frame := outbox.get()) is not None:
        yield frame


def _reply_outcome(replies: Iterator[pb.DownlinkMessage]) -> str:
    """How the server answered the frame just sent: frame_error, answer (it should not)."""
    message = next(replies)
    return "frame_error" if message.HasField("error") else "answer"


class MemoryWatch:
    """The server's resident memory once a second from its `/metrics` URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, float]] = []
        """(seconds since start, MB)."""
        self.errors = 0
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)

    def start(self) -> None:
        self._start = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def read_mb(self) -> float | None:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        match = RSS_PATTERN.search(text)
        return float(match.group(1)) / 1e6 if match else None

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.read_mb()
            if rss is None:
                self.errors += 1
            else:
                self.samples.append((round(time.monotonic() - self._start, 1), round(rss, 1)))
            self._stop.wait(1.0)

    def report(self, warm_up_s: float) -> dict[str, Any]:
        """RSS at start, after warm-up and at the end, and the end's growth over warm-up."""
        if not self.samples:
            return {"url": self.url, "samples": 0, "read_errors": self.errors}
        warm = next((mb for t, mb in self.samples if t >= warm_up_s), self.samples[-1][1])
        end = self.samples[-1][1]
        return {
            "url": self.url,
            "start_mb": self.samples[0][1],
            "after_warm_up_mb": warm,
            "end_mb": end,
            "growth_after_warm_up": round(end / warm - 1.0, 4),
            "warm_up_s": warm_up_s,
            "samples": self.samples,
            "read_errors": self.errors,
        }
