"""Faults a real `splitcast serve` must survive without starving anyone: a client that never
reads its replies, a client that vanishes mid-stream, streams of the largest frames it
accepts, an oversized frame; and the rate limit on its per-frame warnings."""

from __future__ import annotations

import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from splitcast.cloud.session import ReadRate
from splitcast.cloud.uplink import largest_accepted
from splitcast.data.images import encode_image
from splitcast.launch import ChildProcess, start_server
from splitcast.logs import RateLimitedLog
from splitcast.models.registry import get_config
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc

REMOTE_SIZE = get_config("tiny").remote_size
LARGEST = largest_accepted(REMOTE_SIZE)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChildProcess, int]]:
    """A `splitcast serve --model tiny` child process with its default limits, and the port
    of its metrics."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    log_path = tmp_path_factory.mktemp("faults") / "server.log"
    extra = ["--metrics-port", str(metrics_port)]
    with start_server("tiny", threads=1, log_path=log_path, extra=extra) as process:
        yield process, metrics_port


def _metric(metrics_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _frame(sequence: int, data: bytes, size: tuple[int, int], fmt: int) -> pb.UplinkFrame:
    image = pb.EncodedImage(format=fmt, data=data, width=size[1], height=size[0])
    return pb.UplinkFrame(sequence=sequence, image=image, requested_delay_ticks=2.0)


def _small(sequence: int) -> pb.UplinkFrame:
    rgb = np.full((*REMOTE_SIZE, 3), sequence % 256, dtype=np.uint8)
    return _frame(sequence, encode_image(rgb), REMOTE_SIZE, pb.IMAGE_FORMAT_JPEG)


def _paced(count: int, interval_s: float) -> Iterator[pb.UplinkFrame]:
    for sequence in range(count):
        yield _small(sequence)
        time.sleep(interval_s)


def _endless(frame: pb.UplinkFrame, stop: threading.Event) -> Iterator[pb.UplinkFrame]:
    sequence = 0
    while not stop.is_set():
        frame.sequence = sequence
        yield frame
        sequence += 1


def _count_answers(replies: Iterator[pb.DownlinkMessage], counts: list[int], index: int) -> None:
    """Read a stream until it is cancelled, counting its answers in `counts[index]`."""
    try:
        for reply in replies:
            counts[index] += reply.HasField("answer")
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise


def test_a_client_that_never_reads_does_not_hold_up_another(
    served: tuple[ChildProcess, int],
) -> None:
    server, metrics_port = served
    stop = threading.Event()
    with (
        grpc.insecure_channel(server.address) as silent,
        grpc.insecure_channel(server.address) as polite,
    ):
        unread = pb_grpc.SplitInferenceStub(silent).Stream(_endless(_small(0), stop), timeout=60)
        assert _until(lambda: _metric(metrics_port, "splitcast_active_streams") == 1, 10)
        replies = list(pb_grpc.SplitInferenceStub(polite).Stream(_paced(40, 0.05), timeout=60))
        stop.set()
        unread.cancel()
    answered = [reply.answer.source_sequence for reply in replies if reply.HasField("answer")]
    assert len(answered) + replies[-1].frames_dropped == 40
    assert len(answered) >= 30 and answered[-1] == 39
    assert _until(lambda: _metric(metrics_port, "splitcast_active_streams") == 0, 10)


_VANISHING_CLIENT = """
import sys, time, grpc
from splitcast.v1 import splitcast_pb2 as pb, splitcast_pb2_grpc as pb_grpc
frame = pb.UplinkFrame.FromString(sys.stdin.buffer.read())
def frames():
    while True:
        yield frame
replies = pb_grpc.SplitInferenceStub(grpc.insecure_channel(sys.argv[1])).Stream(frames())
next(iter(replies))
print("answered", flush=True)
time.sleep(600)
"""


def test_a_client_killed_mid_stream_frees_its_stream(served: tuple[ChildProcess, int]) -> None:
    server, metrics_port = served
    client = subprocess.Popen(
        [sys.executable, "-c", _VANISHING_CLIENT, server.address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=False,
    )
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(_small(0).SerializeToString())
    client.stdin.flush()
    client.stdin.close()
    assert client.stdout.readline() == b"answered\n"
    assert _metric(metrics_port, "splitcast_active_streams") == 1
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=10)
    assert _until(lambda: _metric(metrics_port, "splitcast_active_streams") == 0, 10)
    with grpc.insecure_channel(server.address) as channel:
        replies = list(pb_grpc.SplitInferenceStub(channel).Stream(_paced(1, 0.0), timeout=30))
    assert replies[-1].answer.source_sequence == 0


def test_a_channel_closed_mid_answer_frees_its_stream(served: tuple[ChildProcess, int]) -> None:
    server, metrics_port = served
    stop = threading.Event()
    channel = grpc.insecure_channel(server.address)
    replies = pb_grpc.SplitInferenceStub(channel).Stream(_endless(_small(0), stop), timeout=60)
    assert next(replies).HasField("answer")
    channel.close()
    stop.set()
    assert _until(lambda: _metric(metrics_port, "splitcast_active_streams") == 0, 10)


def _largest_png() -> pb.UplinkFrame:
    """A frame of the largest size the server accepts, as PNG of noise: the most bytes and
    decoding work a frame can carry."""
    rgb = np.random.default_rng(0).integers(0, 256, (*LARGEST, 3), dtype=np.uint8)
    return _frame(0, encode_image(rgb, "png"), LARGEST, pb.IMAGE_FORMAT_PNG)


def test_info_answers_while_eight_streams_send_the_largest_frames(
    served: tuple[ChildProcess, int],
) -> None:
    server, metrics_port = served
    stop = threading.Event()
    large = _largest_png()
    channels = [grpc.insecure_channel(server.address) for _ in range(8)]
    calls = [
        pb_grpc.SplitInferenceStub(c).Stream(_endless(large, stop), timeout=60) for c in channels
    ]
    counts = [0] * len(calls)
    readers = [
        threading.Thread(target=_count_answers, args=(call, counts, i), daemon=True)
        for i, call in enumerate(calls)
    ]
    for reader in readers:
        reader.start()
    latencies = []
    try:
        assert _until(lambda: _metric(metrics_port, "splitcast_active_streams") == 8, 10)
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.SplitInferenceStub(channel)
            for _ in range(15):
                start = time.monotonic()
                stub.Info(pb.InfoRequest(), timeout=10)
                latencies.append(time.monotonic() - start)
                time.sleep(0.1)
        answered = list(counts)
    finally:
        stop.set()
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()
    assert min(answered) >= 1, f"every large stream must be served meanwhile: {answered}"
    assert max(latencies) < 2.0, f"Info latencies under load: {latencies}"


def test_a_frame_over_the_bound_is_refused_and_one_at_it_answered(
    served: tuple[ChildProcess, int],
) -> None:
    server, _ = served
    at_bound = _largest_png()
    over = _frame(1, at_bound.image.data, (LARGEST[0], LARGEST[1] + 1), pb.IMAGE_FORMAT_PNG)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.SplitInferenceStub(channel)
        (refused,) = stub.Stream(iter([over]), timeout=30)
        (answered,) = stub.Stream(iter([at_bound]), timeout=30)
    assert refused.error.reason == "image_too_large"
    assert f"{LARGEST[1] + 1}x{LARGEST[0]}" in refused.error.message
    assert f"{REMOTE_SIZE[1]}x{REMOTE_SIZE[0]}" in refused.error.message
    assert answered.answer.source_sequence == 0


def test_repeated_warnings_are_rate_limited_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("splitcast.test"), 5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="splitcast.test"):
        for second in range(12):
            now[0] = float(second)
            for _ in range(100):
                limited.warning("peer-a", "frame from %s rejected", "a")
        limited.warning("peer-b", "frame from %s rejected", "b")
    assert [record.getMessage() for record in caplog.records] == [
        "frame from a rejected",
        "frame from a rejected (and 499 like it suppressed)",
        "frame from a rejected (and 499 like it suppressed)",
        "frame from b rejected",
    ]
    assert limited.forget("peer-a") == 199 and limited.forget("peer-a") == 0


def test_a_stream_of_oversized_frames_is_read_as_a_flood_and_in_proportion() -> None:
    rate = ReadRate(60.0)
    rate.read(0.03)  # paced by its camera, frames at the model's input size
    assert rate.interval_s == 1 / 60
    rate.read(0.03, size=4.0)  # frames of four times the input's pixels
    assert rate.interval_s == pytest.approx(4.0 / (60.0 * ReadRate.FLOOD_SHARE))
