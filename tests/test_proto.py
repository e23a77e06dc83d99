"""The wire contract: messages round-trip and the committed stubs match the .proto."""

from __future__ import annotations

from pathlib import Path

from splitcast.v1 import generate
from splitcast.v1 import splitcast_pb2 as pb


def test_uplink_frame_round_trip() -> None:
    frame = pb.UplinkFrame(
        sequence=12345678901,
        capture_time_ns=1_790_000_000_123_456_789,
        image=pb.EncodedImage(
            format=pb.IMAGE_FORMAT_JPEG, data=b"\xff\xd8\x00\x01", width=384, height=192
        ),
        requested_delay_ticks=3.5,
    )
    parsed = pb.UplinkFrame.FromString(frame.SerializeToString())
    assert parsed == frame
    assert parsed.image.data == b"\xff\xd8\x00\x01"
    assert parsed.requested_delay_ticks == 3.5


def test_downlink_answer_of_named_tensors_round_trip() -> None:
    payload = bytes(range(256)) * 10
    tensors = [
        pb.Tensor(name=name, codec="logprobs-u4-zstd", shape=[19, 32, 64],
                  dtype=pb.DTYPE_UINT8, scale=1.0, payload=payload)
        for name in ("forecast", "on_time")
    ]  # fmt: skip
    message = pb.DownlinkMessage(
        answer=pb.Answer(
            source_sequence=7,
            source_capture_time_ns=1_790_000_000_000_000_001,
            conditioned_delay_ticks=4.0,
            tensors=tensors,
            server_receive_time_ns=10,
            server_send_time_ns=20,
        ),
        frames_dropped=3,
    )
    parsed = pb.DownlinkMessage.FromString(message.SerializeToString())
    assert parsed == message
    assert parsed.WhichOneof("body") == "answer"
    assert [t.name for t in parsed.answer.tensors] == ["forecast", "on_time"]
    assert list(parsed.answer.tensors[1].shape) == [19, 32, 64]
    assert parsed.answer.tensors[0].payload == payload


def test_frame_error_round_trip() -> None:
    message = pb.DownlinkMessage(
        error=pb.FrameError(source_sequence=9, reason="undecodable_image", message="bad")
    )
    parsed = pb.DownlinkMessage.FromString(message.SerializeToString())
    assert parsed.WhichOneof("body") == "error"
    assert parsed.error.reason == "undecodable_image"


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    fresh = generate.generate(tmp_path)
    assert fresh, "no stubs generated"
    for path in fresh:
        committed = generate.PACKAGE_DIR / path.name
        assert committed.exists(), f"{committed.name} is not committed; run `make proto`"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed.name} is stale; run `make proto`"
        )
