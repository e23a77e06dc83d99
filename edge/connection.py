"""The edge's connection to the cloud: a background thread that streams frames up and puts
decoded features into a slot.

Nothing here is awaited by the edge loop. The loop calls `submit` (drops the frame into a
latest-wins slot) and reads `features.latest()`. When the server is unreachable or goes away,
this thread reconnects with back-off while the loop keeps running local-only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import torch

from splitcast.data.images import encode_image, fit
from splitcast.edge.slots import FeatureSlot, OutgoingFrame, ReceivedFeatures, UplinkSlot
from splitcast.models.codec import Codec, CodecError, EncodedTensor
from splitcast.models.registry import ModelConfig
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc

log = logging.getLogger("splitcast.edge")

_IMAGE_FORMATS = {
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "webp": pb.IMAGE_FORMAT_WEBP,
    "png": pb.IMAGE_FORMAT_PNG,
}
_DTYPE_NAMES = {
    pb.DTYPE_FLOAT16: "float16",
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_INT8: "int8",
    pb.DTYPE_UINT8: "uint8",
}
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class IncompatibleServer(RuntimeError):
    """The server runs a model whose features this edge cannot fuse."""


@dataclass
class LinkStats:
    """Counters of the connection; written by its threads, read by anyone."""

    connected: bool = False
    connects: int = 0
    frames_sent: int = 0
    uplink_bytes: int = 0
    features_received: int = 0
    downlink_bytes: int = 0
    frame_errors: int = 0
    decode_errors: int = 0
    server_dropped: int = 0
    codec: str = ""
    last_error: str = ""


def decode_tensor(message: pb.Tensor, codecs: dict[str, Codec]) -> torch.Tensor:
    """Decode a downlink tensor message to float32 [1, C, H, W] with one of `codecs`; raises
    CodecError."""
    dtype = _DTYPE_NAMES.get(message.dtype)
    if dtype is None:
        raise CodecError(f"unknown tensor dtype {message.dtype}")
    codec = codecs.get(message.codec)
    if codec is None:
        raise CodecError(
            f"features use codec {message.codec!r}; this edge decodes {', '.join(codecs)}"
        )
    encoded = EncodedTensor(
        message.codec, tuple(message.shape), dtype, message.scale, message.payload
    )
    return torch.from_numpy(codec.decode(encoded)).unsqueeze(0)


class CloudConnection:
    """Streams frames to one server and keeps the freshest features it sends back."""

    def __init__(
        self,
        target: str,
        config: ModelConfig,
        feature_shape: tuple[int, int, int],
        codecs: dict[str, Codec],
        image_format: str = "jpeg",
        quality: int = 90,
        connect_timeout_s: float = 2.0,
    ) -> None:
        if image_format not in _IMAGE_FORMATS:
            raise ValueError(f"unsupported uplink format {image_format!r}")
        self.target = target
        self.config = config
        self.feature_shape = tuple(feature_shape)
        self.codecs = codecs
        self.image_format = image_format
        self.quality = quality
        self.connect_timeout_s = connect_timeout_s
        self.features = FeatureSlot()
        self.uplink: UplinkSlot[OutgoingFrame] = UplinkSlot()
        self.stats = LinkStats()
        self._stop = threading.Event()
        self._call: grpc.Future | None = None
        self._thread = threading.Thread(target=self._run, name="cloud-connection", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=5.0)

    def submit(self, frame: OutgoingFrame) -> None:
        """Offer a frame for the uplink; never blocks (an unsent older frame is dropped)."""
        self.uplink.put(frame)

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            with grpc.insecure_channel(
                self.target,
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ],
            ) as channel:
                stub = pb_grpc.SplitInferenceStub(channel)
                try:
                    info = stub.Info(pb.InfoRequest(), timeout=self.connect_timeout_s)
                    self._check_compatible(info)
                    self._stream(stub, info)
                    backoff = 0.2
                except IncompatibleServer as exc:
                    self.stats.last_error = str(exc)
                    log.error("%s; running local-only", exc)
                    return
                except grpc.RpcError as exc:
                    self.stats.last_error = f"{exc.code().name}: {exc.details()}"
                    log.info("cloud link to %s down (%s)", self.target, self.stats.last_error)
                finally:
                    self.stats.connected = False
                    self._call = None
            self._stop.wait(backoff)
            backoff = min(2 * backoff, 2.0)

    def _check_compatible(self, info: pb.ServerInfo) -> None:
        expected = (self.config.name, self.config.version)
        if (info.model_name, info.model_version) != expected:
            raise IncompatibleServer(
                f"server at {self.target} runs model {info.model_name} {info.model_version}, "
                f"this edge runs {expected[0]} {expected[1]}"
            )
        if info.codec not in self.codecs:
            raise IncompatibleServer(
                f"server at {self.target} sends {info.codec!r} features; this edge decodes "
                f"{', '.join(self.codecs)}"
            )
        if tuple(info.feature_shape) != self.feature_shape:
            raise IncompatibleServer(
                f"server sends features of shape {list(info.feature_shape)}, "
                f"this edge expects {list(self.feature_shape)}"
            )

    def _stream(self, stub: pb_grpc.SplitInferenceStub, info: pb.ServerInfo) -> None:
        done = threading.Event()
        remote_size = (info.remote_input.width, info.remote_input.height)
        responses = stub.Stream(self._requests(done, remote_size))
        self._call = responses
        self.stats.codec = info.codec
        self.stats.connected = True
        self.stats.connects += 1
        try:
            for message in responses:
                self._handle(message)
        finally:
            done.set()

    def _requests(self, done: threading.Event, size: tuple[int, int]) -> Iterator[pb.UplinkFrame]:
        while not (self._stop.is_set() or done.is_set()):
            frame = self.uplink.take(timeout=0.05)
            if frame is None:
                continue
            data = encode_image(fit(frame.rgb, (size[1], size[0])), self.image_format, self.quality)
            self.stats.frames_sent += 1
            self.stats.uplink_bytes += len(data)
            yield pb.UplinkFrame(
                sequence=frame.sequence,
                capture_time_ns=frame.capture_time_ns,
                image=pb.EncodedImage(
                    format=_IMAGE_FORMATS[self.image_format],
                    data=data,
                    width=size[0],
                    height=size[1],
                ),
                requested_delay_ticks=frame.requested_delay_ticks,
            )

    def _handle(self, message: pb.DownlinkMessage) -> None:
        self.stats.server_dropped = message.frames_dropped
        if message.HasField("error"):
            self.stats.frame_errors += 1
            log.warning(
                "server rejected frame %d: %s", message.error.source_sequence, message.error.message
            )
            return
        features = message.features
        try:
            tensor = decode_tensor(features.tensor, self.codecs)
        except CodecError as exc:
            self.stats.decode_errors += 1
            log.warning("features for frame %d unusable: %s", features.source_sequence, exc)
            return
        if tuple(tensor.shape[1:]) != self.feature_shape:
            self.stats.decode_errors += 1
            log.warning(
                "features for frame %d have shape %s", features.source_sequence, list(tensor.shape)
            )
            return
        now = time.time_ns()
        self.stats.features_received += 1
        self.stats.downlink_bytes += len(features.tensor.payload)
        self.features.put(
            ReceivedFeatures(
                source_sequence=features.source_sequence,
                conditioned_delay_ticks=features.conditioned_delay_ticks,
                features=tensor,
                received_ns=now,
                round_trip_ms=(now - features.source_capture_time_ns) / 1e6,
                server_ms=(features.server_send_time_ns - features.server_receive_time_ns) / 1e6,
                payload_bytes=len(features.tensor.payload),
                context_sequences=tuple(features.context_sequences),
            )
        )
