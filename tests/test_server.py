"""The gRPC server over real sockets: info, health, reflection, latest-wins, bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from splitcast.data.images import encode_image
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import ChildProcess
from splitcast.models.registry import build
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc

CONFIG = build("tiny").config
HEIGHT, WIDTH = CONFIG.remote_size


def good_frame(sequence: int, delay: float = 2.0) -> pb.UplinkFrame:
    rgb = MovingSceneSource(width=WIDTH, height=HEIGHT).render(sequence)
    return pb.UplinkFrame(
        sequence=sequence,
        capture_time_ns=time.time_ns(),
        image=pb.EncodedImage(
            format=pb.IMAGE_FORMAT_JPEG, data=encode_image(rgb), width=WIDTH, height=HEIGHT
        ),
        requested_delay_ticks=delay,
    )


def paced(frames: list[pb.UplinkFrame], interval_s: float) -> Iterator[pb.UplinkFrame]:
    for frame in frames:
        yield frame
        time.sleep(interval_s)


def test_info_describes_the_model(stub: pb_grpc.SplitInferenceStub) -> None:
    info = stub.Info(pb.InfoRequest(), timeout=10)
    assert info.model_name == "tiny"
    assert (info.remote_input.height, info.remote_input.width) == CONFIG.remote_size
    assert (info.local_input.height, info.local_input.width) == CONFIG.local_size
    assert info.combiner == "feature_fusion"
    assert [(t.name, list(t.shape), t.codec) for t in info.tensors] == [
        ("features", [32, CONFIG.local_size[0] // 8, CONFIG.local_size[1] // 8], "raw-fp16")
    ]
    assert (info.uplink.format, info.uplink.quality) == (pb.IMAGE_FORMAT_JPEG, 90)
    assert info.context_frames == 4
    assert info.fps == 30.0


def test_health_and_reflection_are_served(server: ChildProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "splitcast.v1.SplitInference"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(reflection.ServerReflectionInfo(iter([request]), timeout=10)))
        names = {service.name for service in reply.list_services_response.service}
        assert {"splitcast.v1.SplitInference", "grpc.health.v1.Health"} <= names


def test_answers_come_back_conditioned_on_the_requested_delay(
    stub: pb_grpc.SplitInferenceStub,
) -> None:
    frames = [good_frame(i, delay=float(i % 3)) for i in range(6)]
    replies = list(stub.Stream(paced(frames, 0.1), timeout=60))
    answers = [reply.answer for reply in replies if reply.HasField("answer")]
    assert [a.source_sequence for a in answers] == list(range(6))
    for a in answers:
        assert a.conditioned_delay_ticks == float(a.source_sequence % 3)
        (tensor,) = a.tensors
        assert tensor.name == "features" and list(tensor.shape) == [32, 16, 32]
        assert len(tensor.payload) == 32 * 16 * 32 * 2
        assert a.server_send_time_ns >= a.server_receive_time_ns
        values = np.frombuffer(tensor.payload, dtype="<f2")
        assert np.isfinite(values).all() and values.std() > 0


def test_latest_wins_drops_instead_of_queueing(stub: pb_grpc.SplitInferenceStub) -> None:
    frames = [good_frame(i) for i in range(40)]
    replies = list(stub.Stream(iter(frames), timeout=60))
    answered = [reply.answer.source_sequence for reply in replies]
    dropped = replies[-1].frames_dropped
    print(f"40 frames sent back to back: {len(answered)} answered, {dropped} dropped")
    assert dropped > 0
    assert len(answered) + dropped == 40
    assert answered == sorted(answered)
    assert answered[-1] == 39, "the newest frame must always be answered"


def _bad_frames() -> list[tuple[pb.UplinkFrame, str]]:
    garbage = good_frame(100)
    garbage.image.data = b"\x00" * 500
    unsupported = good_frame(101)
    unsupported.image.format = pb.IMAGE_FORMAT_UNSPECIFIED
    absurd = good_frame(102)
    absurd.image.width, absurd.image.height = 1_000_000, 1_000_000
    wrong_size = good_frame(103)
    wrong_size.image.width = WIDTH - 1
    bad_delay = good_frame(104, delay=float("nan"))
    return [
        (garbage, "undecodable_image"),
        (unsupported, "unsupported_format"),
        (absurd, "image_too_large"),
        (wrong_size, "bad_dimensions"),
        (bad_delay, "bad_delay"),
    ]


def test_bad_frames_get_errors_and_another_stream_is_unaffected(server: ChildProcess) -> None:
    with (
        grpc.insecure_channel(server.address) as channel_a,
        grpc.insecure_channel(server.address) as channel_b,
    ):
        stub_a = pb_grpc.SplitInferenceStub(channel_a)
        stub_b = pb_grpc.SplitInferenceStub(channel_b)
        good_replies: list[pb.DownlinkMessage] = []
        other = threading.Thread(
            target=lambda: good_replies.extend(
                stub_b.Stream(paced([good_frame(i) for i in range(30)], 0.05), timeout=60)
            )
        )
        other.start()
        bad = _bad_frames()
        sent = [frame for frame, _ in bad] + [good_frame(200)]
        replies = list(stub_a.Stream(paced(sent, 0.1), timeout=60))
        other.join()
    errors = [reply.error for reply in replies if reply.HasField("error")]
    assert [(e.source_sequence, e.reason) for e in errors] == [(f.sequence, r) for f, r in bad]
    assert all(e.message for e in errors)
    assert replies[-1].answer.source_sequence == 200, (
        "the stream must keep working after bad frames"
    )
    answers_b = [reply for reply in good_replies if reply.HasField("answer")]
    assert len(answers_b) + good_replies[-1].frames_dropped == 30
    assert not any(reply.HasField("error") for reply in good_replies)


def test_oversized_message_fails_only_its_own_stream(
    server: ChildProcess, stub: pb_grpc.SplitInferenceStub
) -> None:
    huge = good_frame(0)
    huge.image.data = b"\xff" * (9 * 1024 * 1024)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Stream(iter([huge]), timeout=60))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    replies = list(stub.Stream(paced([good_frame(1)], 0.0), timeout=60))
    assert replies[-1].answer.source_sequence == 1
    assert server.process.poll() is None
