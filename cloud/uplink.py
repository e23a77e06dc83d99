"""Checking what an edge sends before the server spends work on it.

Two layers: the bytes of a message (`tolerant` parsing, so bytes that are no protobuf message
end the call with INVALID_ARGUMENT rather than gRPC's UNKNOWN with a Python exception text),
and an uplink frame's fields (`validated`: the requested delay, the image format and a size
bounded by what the model needs, all checked before any pixel is decompressed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message

from splitcast.data.images import ImageDecodeError, decode_image
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc
from splitcast.v1.wire import FORMAT_NAMES, format_label

MAX_DELAY_TICKS = 300.0
OVERSIZE_FACTOR = 4
"""A frame may be at most this many times the model's remote input per side. The server
resizes every frame to the remote input, so a larger one only costs decoding time and memory
(a 4x4 larger frame already decodes 16 times the pixels the model sees); an edge scales its
frames to the remote input it learns from `Info`, well inside the bound, while one
stream's oversized frames cannot hold the decoding threads that every stream shares."""

LARGE_PIXELS = 4.0
"""Frames up to this many times the remote input's pixels (a 1080p camera frame sent to a
1024x512 model) are read, decoded and stepped like any other; larger ones are charged in
proportion to their pixels (`size_over_input`)."""

M = TypeVar("M", bound=Message)


class MalformedMessage:
    """What `tolerant` parsing gives for bytes that are not a message of the expected type."""

    def __init__(self, error: str) -> None:
        self.error = error

    def __str__(self) -> str:
        return f"the message is not a valid protobuf: {self.error}"


def tolerant(message_type: type[M]) -> Callable[[bytes], M | MalformedMessage]:
    """A request deserializer that gives a `MalformedMessage` instead of raising, so the
    servicer can end the call with INVALID_ARGUMENT and say why."""

    def parse(data: bytes) -> M | MalformedMessage:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return MalformedMessage(str(exc) or "cannot parse")

    return parse


def add_servicer(servicer: pb_grpc.SplitInferenceServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` as the generated stubs' `add_SplitInferenceServicer_to_server` does,
    but with `tolerant` request parsing."""
    handlers = {
        "Stream": grpc.stream_stream_rpc_method_handler(
            servicer.Stream,
            request_deserializer=tolerant(pb.UplinkFrame),
            response_serializer=pb.DownlinkMessage.SerializeToString,
        ),
        "Info": grpc.unary_unary_rpc_method_handler(
            servicer.Info,
            request_deserializer=tolerant(pb.InfoRequest),
            response_serializer=pb.ServerInfo.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["SplitInference"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def largest_accepted(remote_size: tuple[int, int]) -> tuple[int, int]:
    """The largest frame (height, width) accepted for a model of `remote_size` input."""
    return remote_size[0] * OVERSIZE_FACTOR, remote_size[1] * OVERSIZE_FACTOR


def size_over_input(frame: pb.UplinkFrame, remote_size: tuple[int, int]) -> float:
    """What the frame costs in remote inputs: 1 up to `LARGE_PIXELS` times the input's pixels,
    its declared pixels over the input's beyond that; 1 again for a frame over the bound
    (`largest_accepted`), which is refused before decoding, at no cost."""
    pixels = frame.image.width * frame.image.height / (remote_size[0] * remote_size[1])
    return 1.0 if pixels <= LARGE_PIXELS or _over_bound(frame, remote_size) else pixels


def _over_bound(frame: pb.UplinkFrame, remote_size: tuple[int, int]) -> bool:
    largest = largest_accepted(remote_size)
    return frame.image.width > largest[1] or frame.image.height > largest[0]


def validated(frame: pb.UplinkFrame, remote_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The frame's decoded RGB image and requested delay, or ImageDecodeError saying why not;
    frames declared larger than `largest_accepted(remote_size)` are refused before decoding
    (and `decode_image` checks the real size against the declared one before decompressing)."""
    delay = frame.requested_delay_ticks
    if not math.isfinite(delay) or not 0.0 <= delay <= MAX_DELAY_TICKS:
        raise ImageDecodeError(
            "bad_delay", f"requested delay {delay} ticks is outside 0..{MAX_DELAY_TICKS:g}"
        )
    fmt = FORMAT_NAMES.get(frame.image.format)
    if fmt is None:
        raise ImageDecodeError(
            "unsupported_format",
            f"image format {format_label(frame.image.format)} is not supported; "
            "send JPEG, WebP or PNG",
        )
    width, height = frame.image.width, frame.image.height
    if _over_bound(frame, remote_size):
        largest = largest_accepted(remote_size)
        raise ImageDecodeError(
            "image_too_large",
            f"declared {width}x{height} is larger than the {largest[1]}x{largest[0]} this "
            f"server accepts ({OVERSIZE_FACTOR}x the model's remote input of "
            f"{remote_size[1]}x{remote_size[0]} per side); scale frames to the remote input",
        )
    image = decode_image(frame.image.data, fmt, width, height)
    return image, delay
