"""The edge's connection to the cloud: a background thread that streams frames up and puts
decoded answers into a slot.

Nothing here is awaited by the edge's step. It calls `submit` (drops the frame into a
latest-wins slot) and reads `answers.latest()`. Uplink frames are encoded as the server's
`Info` says (format and quality: what the model was trained and scored on). When the server
is unreachable or goes away, this thread reconnects with back-off while the edge keeps running
local-only.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import numpy as np

from splitcast.data.images import encode_image, fit
from splitcast.edge.credentials import ClientSecurity
from splitcast.edge.slots import AnswerSlot, AnswerTrip, OutgoingFrame, ReceivedAnswer, UplinkSlot
from splitcast.logs import RateLimitedLog
from splitcast.models.answers import WireTensor
from splitcast.models.codec import Codec, CodecError
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc
from splitcast.v1.wire import FORMAT_NAMES, encoded_tensor, wire_tensors

if TYPE_CHECKING:
    from splitcast.models.registry import SplitSystem

log = logging.getLogger("splitcast.edge")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SENT_TIMES_KEPT = 256
PING_INTERVAL_S = 20.0
"""Keepalive pings on an idle connection, so a proxy or NAT does not drop it silently; the
server accepts pings 10 s apart or more (`splitcast.cloud.options`)."""
PING_TIMEOUT_S = 10.0
# Setting up a stream takes a few round trips: on a link as long as the answer horizon (1 s)
# a shorter limit would never connect; a silent server costs this long per try (local-only
# meanwhile, as always).
CONNECT_TIMEOUT_S = 5.0
RETRY_UNREACHABLE_S = (0.1, 0.5)
"""First and longest wait between attempts to reach a server that is down: short, so the edge
uses a restarted server's answers well within a second of it coming back (an attempt on a
closed port costs next to nothing)."""
RETRY_INCOMPATIBLE_S = (1.0, 5.0)
"""The same for a server running another model: it may be replaced by the right one (a
rolling update), so the edge keeps asking, less often."""

CONNECTING, CONNECTED, UNREACHABLE, INCOMPATIBLE = (
    "connecting",
    "connected",
    "server_unreachable",
    "server_incompatible",
)
"""States of the link to the server (`LinkStats.state`)."""


class IncompatibleServer(RuntimeError):
    """The server runs a model whose answers this edge cannot use."""


@dataclass(frozen=True)
class ExpectedServer:
    """What this edge's model needs a server to run and send."""

    model_name: str
    model_version: str
    combiner: str
    tensors: tuple[WireTensor, ...]
    local_size: tuple[int, int]
    fps: float
    """The model's frame rate: the length of the delay tick both sides count in."""

    @classmethod
    def for_system(cls, system: SplitSystem) -> ExpectedServer:
        config, combiner = system.config, system.combiner()
        return cls(
            config.name,
            config.version,
            combiner.name,
            combiner.wire(),
            config.local_size,
            config.fps,
        )


@dataclass
class LinkStats:
    """Counters of the connection; written by its threads, read by anyone."""

    connected: bool = False
    state: str = CONNECTING
    """CONNECTING, CONNECTED, UNREACHABLE or INCOMPATIBLE."""
    connects: int = 0
    frames_sent: int = 0
    uplink_bytes: int = 0
    answers_received: int = 0
    downlink_bytes: int = 0
    frame_errors: int = 0
    decode_errors: int = 0
    server_dropped: int = 0
    uplink: str = ""
    last_error: str = ""


def check_target(target: str) -> str:
    """`target` if it is a server address gRPC can dial (HOST:PORT, [IPv6]:PORT, unix:PATH);
    ValueError naming what is wrong otherwise, so a typo is caught at start."""
    if target.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return target
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"server address {target!r} is not HOST:PORT (e.g. 127.0.0.1:50051)")
    return target


def decode_answer(
    message: pb.Answer, expected: tuple[WireTensor, ...], codecs: dict[str, Codec]
) -> dict[str, np.ndarray]:
    """An answer's tensors as float32 arrays [1, C, H, W] by name; raises CodecError unless it holds
    exactly the `expected` tensors with their shapes and codecs."""
    names = [t.name for t in message.tensors]
    if names != [t.name for t in expected]:
        raise CodecError(f"answer holds tensors {names}, expected {[t.name for t in expected]}")
    tensors = {}
    for spec, tensor in zip(expected, message.tensors, strict=True):
        codec = codecs.get(tensor.codec)
        if codec is None or tensor.codec != spec.codec:
            raise CodecError(
                f"tensor {spec.name!r} uses codec {tensor.codec!r}, not {spec.codec!r}"
            )
        decoded = codec.decode(encoded_tensor(tensor))
        if decoded.shape != spec.shape:
            raise CodecError(
                f"tensor {spec.name!r} has shape {list(decoded.shape)}, not {list(spec.shape)}"
            )
        tensors[spec.name] = decoded[np.newaxis]
    return tensors


class CloudConnection:
    """Streams frames to one server and keeps the freshest answer it sends back."""

    def __init__(
        self,
        target: str,
        expected: ExpectedServer,
        codecs: dict[str, Codec],
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        security: ClientSecurity | None = None,
        on_answer: Callable[[ReceivedAnswer], None] | None = None,
    ) -> None:
        """`on_answer`: called on the connection's thread with every decoded answer (a load
        generator counts them; the edge only reads the freshest from `answers`)."""
        self.target = check_target(target)
        self.security = security or ClientSecurity()
        self.on_answer = on_answer
        self.expected = expected
        self.codecs = codecs
        self.connect_timeout_s = connect_timeout_s
        self.answers = AnswerSlot()
        self.wire = expected.tensors
        """The tensors the connected server announced (names, shapes and the codecs it uses)."""
        self.uplink: UplinkSlot[OutgoingFrame] = UplinkSlot()
        self.stats = LinkStats()
        self._warnings = RateLimitedLog(log)
        self._reported: str | None = None
        """The last link problem shown at WARNING, so each new one is, and repeats are not."""
        self._stop = threading.Event()
        self._call: grpc.Future | None = None
        self._sent: dict[int, tuple[int, int, int]] = {}
        """Capture, encode start and encode end of recently sent frames, by sequence."""
        self._thread = threading.Thread(target=self._run, name="cloud-connection", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=5.0)

    def submit(self, frame: OutgoingFrame) -> None:
        """Offer a frame for the uplink; never blocks (an unsent older frame is dropped)."""
        self.uplink.put(frame)

    def _run(self) -> None:
        retry = RETRY_UNREACHABLE_S
        wait = retry[0]
        while not self._stop.is_set():
            options = [
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", int(PING_INTERVAL_S * 1000)),
                ("grpc.keepalive_timeout_ms", int(PING_TIMEOUT_S * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
            with self.security.channel(self.target, options) as channel:
                stub = pb_grpc.SplitInferenceStub(channel)
                try:
                    info = stub.Info(
                        pb.InfoRequest(),
                        timeout=self.connect_timeout_s,
                        metadata=self.security.metadata,
                    )
                    self._check_compatible(info)
                    self._stream(stub, info)
                    retry, wait = RETRY_UNREACHABLE_S, 0.0
                except IncompatibleServer as exc:
                    self._down(INCOMPATIBLE, str(exc))
                    if retry is not RETRY_INCOMPATIBLE_S:
                        retry, wait = RETRY_INCOMPATIBLE_S, RETRY_INCOMPATIBLE_S[0]
                except grpc.RpcError as exc:
                    self._down(UNREACHABLE, f"{exc.code().name}: {exc.details()}")
                    if retry is not RETRY_UNREACHABLE_S:
                        retry, wait = RETRY_UNREACHABLE_S, RETRY_UNREACHABLE_S[0]
                except Exception as exc:  # never let one odd reply end the link for good
                    self._down(UNREACHABLE, f"{type(exc).__name__}: {exc}")
                finally:
                    if self.stats.state == CONNECTED and not self._stop.is_set():
                        self.stats.state = CONNECTING
                    self.stats.connected = False
                    self._call = None
            self._stop.wait(wait)
            wait = min(max(2 * wait, retry[0]), retry[1])

    def _down(self, state: str, error: str) -> None:
        """Record why the link is down; say so at WARNING when the reason is new (the user sees
        it on the terminal) and at INFO while it repeats; a call ended by `stop` is not news."""
        if self._stop.is_set():
            return
        self.stats.state, self.stats.last_error = state, error
        problem = f"{state}: {error}"
        level = logging.INFO if problem == self._reported else logging.WARNING
        self._reported = problem
        log.log(
            level,
            "no answers from %s (%s); running local-only, retrying",
            self.target,
            error if state == UNREACHABLE else f"incompatible: {error}",
        )

    def _check_compatible(self, info: pb.ServerInfo) -> None:
        expected = self.expected
        if (info.model_name, info.model_version) != (expected.model_name, expected.model_version):
            raise IncompatibleServer(
                f"server at {self.target} runs model {info.model_name} {info.model_version}, "
                f"this edge runs {expected.model_name} {expected.model_version}"
            )
        served = ((info.local_input.height, info.local_input.width), info.fps)
        same_tick = math.isclose(info.fps, expected.fps, rel_tol=1e-6)  # float32 on the wire
        if served[0] != tuple(expected.local_size) or not same_tick:
            raise IncompatibleServer(
                f"server at {self.target} runs its model for a {served[0][0]}x{served[0][1]} "
                f"local input at {served[1]:g} fps; this edge's is "
                f"{expected.local_size[0]}x{expected.local_size[1]} at {expected.fps:g} fps"
            )
        tensors = wire_tensors(list(info.tensors))
        if (info.combiner, _shapes(tensors)) != (expected.combiner, _shapes(expected.tensors)):
            raise IncompatibleServer(
                f"server at {self.target} answers for {info.combiner} with "
                f"{_describe(tensors)}; this edge combines {expected.combiner} answers of "
                f"{_describe(expected.tensors)}"
            )
        unknown = sorted({t.codec for t in tensors} - set(self.codecs))
        if unknown:
            raise IncompatibleServer(
                f"server at {self.target} sends codecs {unknown}; this edge decodes "
                f"{', '.join(self.codecs)}"
            )
        if info.uplink.format not in FORMAT_NAMES:
            raise IncompatibleServer(
                f"server at {self.target} asks for uplink format {info.uplink.format}, "
                f"which this edge cannot encode"
            )
        self.wire = tensors

    def _stream(self, stub: pb_grpc.SplitInferenceStub, info: pb.ServerInfo) -> None:
        done = threading.Event()
        responses = stub.Stream(self._requests(done, info), metadata=self.security.metadata)
        self._call = responses
        if self._stop.is_set():  # stop() ran before the call existed
            responses.cancel()
        self.stats.uplink = f"{FORMAT_NAMES[info.uplink.format]} q{info.uplink.quality}"
        self.stats.connected, self.stats.state = True, CONNECTED
        self.stats.connects += 1
        if self._reported is not None:
            log.warning("streaming to %s again", self.target)
            self._reported = None
        try:
            for message in responses:
                self._handle(message)
        finally:
            done.set()

    def _requests(self, done: threading.Event, info: pb.ServerInfo) -> Iterator[pb.UplinkFrame]:
        size = (info.remote_input.height, info.remote_input.width)
        image_format, quality = FORMAT_NAMES[info.uplink.format], info.uplink.quality
        while not (self._stop.is_set() or done.is_set()):
            frame = self.uplink.take(timeout=0.05)
            if frame is None:
                continue
            started = time.time_ns()
            data = encode_image(fit(frame.rgb, size), image_format, quality)
            self._sent[frame.sequence] = (frame.capture_time_ns, started, time.time_ns())
            if len(self._sent) > SENT_TIMES_KEPT:
                del self._sent[next(iter(self._sent))]
            self.stats.frames_sent += 1
            self.stats.uplink_bytes += len(data)
            yield pb.UplinkFrame(
                sequence=frame.sequence,
                capture_time_ns=frame.capture_time_ns,
                image=pb.EncodedImage(
                    format=info.uplink.format, data=data, width=size[1], height=size[0]
                ),
                requested_delay_ticks=frame.requested_delay_ticks,
            )

    def _handle(self, message: pb.DownlinkMessage) -> None:
        arrival = time.time_ns()
        self.stats.server_dropped = message.frames_dropped
        if message.HasField("error"):
            self.stats.frame_errors += 1
            self._warnings.warning(
                ("rejected", message.error.reason),
                "server rejected frame %d: %s",
                message.error.source_sequence,
                message.error.message,
            )
            return
        answer = message.answer
        try:
            tensors = decode_answer(answer, self.wire, self.codecs)
        except CodecError as exc:
            self.stats.decode_errors += 1
            self._warnings.warning(
                "unusable", "answer for frame %d unusable: %s", answer.source_sequence, exc
            )
            return
        now = time.time_ns()
        payload_bytes = sum(len(t.payload) for t in answer.tensors)
        self.stats.answers_received += 1
        self.stats.downlink_bytes += payload_bytes
        received = ReceivedAnswer(
            source_sequence=answer.source_sequence,
            conditioned_delay_ticks=answer.conditioned_delay_ticks,
            tensors=tensors,
            received_ns=now,
            round_trip_ms=(now - answer.source_capture_time_ns) / 1e6,
            server_ms=(answer.server_send_time_ns - answer.server_receive_time_ns) / 1e6,
            payload_bytes=payload_bytes,
            context_sequences=tuple(answer.context_sequences),
            trip=self._trip(answer, arrival, now),
        )
        self.answers.put(received)
        if self.on_answer is not None:
            self.on_answer(received)

    def _trip(self, answer: pb.Answer, arrival: int, decoded: int) -> AnswerTrip | None:
        sent = self._sent.get(answer.source_sequence)
        if sent is None:
            return None
        steps = answer.steps
        return AnswerTrip(
            *sent,
            server_receive=answer.server_receive_time_ns,
            server_taken=steps.taken_time_ns,
            server_decoded=steps.decoded_time_ns,
            model_start=steps.model_start_time_ns,
            model_end=steps.model_end_time_ns,
            answer_encoded=steps.encoded_time_ns,
            server_send=answer.server_send_time_ns,
            arrival=arrival,
            decoded=decoded,
        )


def _shapes(tensors: tuple[WireTensor, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """What must match between edge and server: the tensors' names and shapes (the codec may
    differ, as long as the edge decodes it)."""
    return [(t.name, tuple(t.shape)) for t in tensors]


def _describe(tensors: tuple[WireTensor, ...]) -> str:
    return ", ".join(f"{t.name} {list(t.shape)} {t.codec}" for t in tensors) or "no tensors"
