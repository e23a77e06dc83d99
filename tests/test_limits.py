"""Per-stream limits of a real server: a stream that sends nothing is closed, a flooding
sender is read no faster than the limit, and connections aged out move edges to a new
connection without losing an on-time output."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from conftest import stream_frames

import splitcast
from splitcast.cloud.options import ServeOptions
from splitcast.data.images import encode_image
from splitcast.edge.sources import MovingSceneSource
from splitcast.models.registry import build, get_config
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc


def _frames(count: int, stop: threading.Event | None = None) -> Iterator[pb.UplinkFrame]:
    """`count` real JPEG frames of the model's input size as fast as gRPC takes them, then
    silence until `stop`."""
    height, width = get_config("tiny").remote_size
    data = encode_image(MovingSceneSource(width=width, height=height).render(0))
    for sequence in range(count):
        image = pb.EncodedImage(format=pb.IMAGE_FORMAT_JPEG, data=data, width=width, height=height)
        yield pb.UplinkFrame(sequence=sequence, image=image, requested_delay_ticks=3.0)
    if stop is not None:
        stop.wait(30)


def _read_until_cancelled(replies: Iterator[pb.DownlinkMessage]) -> None:
    try:
        for _ in replies:
            pass
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.CANCELLED


def _received(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("splitcast_frames_received_total "):
                return float(line.split()[1])
    raise AssertionError("no splitcast_frames_received_total")


def test_a_silent_stream_is_closed_after_the_idle_timeout() -> None:
    stop = threading.Event()
    with (
        splitcast.serve(build("tiny"), options=ServeOptions(idle_timeout_s=1.0)) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as closed:
            list(pb_grpc.SplitInferenceStub(channel).Stream(_frames(2, stop), timeout=30))
        stop.set()
    assert closed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no frame for 1 s" in closed.value.details()
    assert time.monotonic() - start < 15


def test_a_flooding_sender_is_read_no_faster_than_the_limit() -> None:
    options = ServeOptions(max_stream_fps=5.0, metrics_port=0)
    stop = threading.Event()
    with (
        splitcast.serve(build("tiny"), options=options) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        replies = pb_grpc.SplitInferenceStub(channel).Stream(_frames(200, stop), timeout=30)
        threading.Thread(target=_read_until_cancelled, args=(replies,), daemon=True).start()
        time.sleep(3.0)
        received = _received(server.metrics_port)
        stop.set()
        replies.cancel()
    assert 5 <= received <= 5 * 3.0 + 2  # 200 offered at once; read at 5 a second


def test_aged_out_connections_reconnect_and_answers_resume() -> None:
    options = ServeOptions(max_connection_age_s=2.0, drain_s=1.0)
    with (
        splitcast.serve(build("tiny"), options=options) as server,
        splitcast.EdgeClient(build("tiny"), server=server.address) as edge,
    ):
        results = stream_frames(edge, frames=180)  # about 7 s at 30 fps
    assert len(results) == 180  # an on-time output for every frame throughout
    assert edge.stats.connects >= 2
    assert edge.stats.frame_errors == 0 and edge.stats.decode_errors == 0
    assert any(result.mode == "combined" for result in results[-60:])
