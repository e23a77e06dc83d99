"""Property-based fuzzing of what an edge can send a real server (`splitcast serve` over a real
socket): every field of an uplink frame, and raw bytes in place of a frame. Every frame gets an
answer or a FrameError saying why, in the order the server checks; bytes that are no frame end
their call with INVALID_ARGUMENT; and the server keeps answering good frames throughout."""

from __future__ import annotations

import math
import queue
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import event, given, settings
from hypothesis import strategies as st

from splitcast.cloud.uplink import MAX_DELAY_TICKS, largest_accepted
from splitcast.data.images import encode_image
from splitcast.launch import ChildProcess
from splitcast.models.registry import get_config
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc
from splitcast.v1.wire import FORMAT_NAMES, IMAGE_FORMATS

REMOTE_SIZE = get_config("tiny").remote_size
LARGEST = largest_accepted(REMOTE_SIZE)
FUZZ = settings(max_examples=60, deadline=None)


class LockStep:
    """One stream on which each frame is sent only after the previous one's reply came back,
    so latest-wins never drops a fuzzed frame: every frame must be answered."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._outbox: queue.Queue[pb.UplinkFrame | None] = queue.Queue()
        stub = pb_grpc.SplitInferenceStub(channel)
        self._replies = stub.Stream(iter(self._outbox.get, None), timeout=300)

    def send(self, frame: pb.UplinkFrame) -> pb.DownlinkMessage:
        self._outbox.put(frame)
        return next(self._replies)

    def close(self) -> None:
        self._outbox.put(None)
        for _ in self._replies:
            pass


@pytest.fixture(scope="module")
def channel(server: ChildProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stream(channel: grpc.Channel) -> Iterator[LockStep]:
    lock_step = LockStep(channel)
    yield lock_step
    lock_step.close()


def good_frame(sequence: int) -> pb.UplinkFrame:
    rgb = np.random.default_rng(sequence).integers(0, 256, (*REMOTE_SIZE, 3), dtype=np.uint8)
    image = pb.EncodedImage(
        format=pb.IMAGE_FORMAT_JPEG,
        data=encode_image(rgb),
        width=REMOTE_SIZE[1],
        height=REMOTE_SIZE[0],
    )
    return pb.UplinkFrame(sequence=sequence, image=image, requested_delay_ticks=2.0)


@st.composite
def images(draw: st.DrawFn) -> pb.EncodedImage:
    """Real images of any small size (some with their bytes truncated or a byte flipped),
    or arbitrary bytes; half declared truthfully, half with any format and size."""
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    fmt = draw(st.sampled_from(sorted(IMAGE_FORMATS)))
    seed = draw(st.integers(0, 2**32 - 1))
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    data = encode_image(rgb, fmt)
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "arbitrary"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif damage == "arbitrary":
        data = draw(st.binary(max_size=4096))
    image = pb.EncodedImage(format=IMAGE_FORMATS[fmt], data=data, width=width, height=height)
    if draw(st.booleans()):
        return image
    sizes = [st.integers(0, 2**32 - 1), *(st.integers(side - 1, side + 1) for side in LARGEST)]
    image.format = draw(st.one_of(st.just(image.format), st.integers(-(2**31), 2**31 - 1)))
    image.height = draw(st.one_of(st.just(height), *sizes))
    image.width = draw(st.one_of(st.just(width), *sizes))
    return image


frames = st.builds(
    pb.UplinkFrame,
    sequence=st.integers(0, 2**64 - 1),
    capture_time_ns=st.integers(-(2**63), 2**63 - 1),
    image=images(),
    requested_delay_ticks=st.one_of(
        st.floats(0.0, MAX_DELAY_TICKS, width=32), st.floats(width=32, allow_nan=True)
    ),
)


def expected_refusal(frame: pb.UplinkFrame) -> str | None:
    """The reason the server must give for `frame`, where its fields alone decide it (the
    server checks delay, format and size before decoding); None when decoding decides."""
    delay = frame.requested_delay_ticks
    if not (math.isfinite(delay) and 0.0 <= delay <= MAX_DELAY_TICKS):
        return "bad_delay"
    if frame.image.format not in FORMAT_NAMES:
        return "unsupported_format"
    if frame.image.width > LARGEST[1] or frame.image.height > LARGEST[0]:
        return "image_too_large"
    return None


@FUZZ
@given(frame=frames)
def test_every_fuzzed_frame_gets_an_answer_or_a_frame_error(
    stream: LockStep, frame: pb.UplinkFrame
) -> None:
    reply = stream.send(frame)
    body = reply.WhichOneof("body")
    refusal = expected_refusal(frame)
    event(reply.error.reason if body == "error" else "answered")
    if body == "answer":
        assert refusal is None, f"answered a frame that must be refused ({refusal})"
        assert reply.answer.source_sequence == frame.sequence
        assert reply.answer.source_capture_time_ns == frame.capture_time_ns
        assert reply.answer.tensors
    else:
        assert body == "error"
        assert reply.error.source_sequence == frame.sequence and reply.error.message
        if refusal is not None:
            assert reply.error.reason == refusal
    good = stream.send(good_frame(7))
    assert good.answer.source_sequence == 7, "the stream must stay usable after any frame"


def test_an_intact_image_of_any_accepted_size_is_answered(stream: LockStep) -> None:
    height, width = LARGEST
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    image = pb.EncodedImage(
        format=pb.IMAGE_FORMAT_PNG, data=encode_image(rgb, "png"), width=width, height=height
    )
    frame = pb.UplinkFrame(sequence=8, image=image, requested_delay_ticks=1.0)
    assert stream.send(frame).answer.source_sequence == 8


def _raw_call(channel: grpc.Channel, data: bytes) -> tuple[grpc.StatusCode, list]:
    """The status and replies of a call that sends `data` as its only request message."""
    call = channel.stream_stream(
        "/splitcast.v1.SplitInference/Stream",
        request_serializer=lambda raw: raw,
        response_deserializer=pb.DownlinkMessage.FromString,
    )
    replies = call(iter([data]), timeout=30)
    received = []
    try:
        received.extend(replies)
    except grpc.RpcError as exc:
        assert exc.details() and "Traceback" not in exc.details()
        return exc.code(), received
    return grpc.StatusCode.OK, received


def _parses(data: bytes) -> bool:
    try:
        pb.UplinkFrame.FromString(data)
    except DecodeError:
        return False
    return True


@st.composite
def cut_frames(draw: st.DrawFn) -> bytes:
    """A serialized frame cut short: some cuts still parse (at a field's end), most do not."""
    data = draw(frames).SerializeToString()
    return data[: draw(st.integers(0, len(data)))]


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), cut_frames()))
def test_raw_bytes_are_refused_with_invalid_argument_or_parsed(
    channel: grpc.Channel, data: bytes
) -> None:
    status, replies = _raw_call(channel, data)
    event(status.name)
    if _parses(data):
        assert status == grpc.StatusCode.OK
        assert len(replies) == 1 and replies[0].WhichOneof("body") in ("answer", "error")
    else:
        assert status == grpc.StatusCode.INVALID_ARGUMENT
        assert not replies


def test_the_server_serves_others_after_the_fuzzing(channel: grpc.Channel) -> None:
    info = pb_grpc.SplitInferenceStub(channel).Info(pb.InfoRequest(), timeout=10)
    assert (info.remote_input.height, info.remote_input.width) == REMOTE_SIZE
    fresh = LockStep(channel)
    assert fresh.send(good_frame(9)).answer.source_sequence == 9
    fresh.close()
