"""Shared fixtures: real server processes on 127.0.0.1, stopped by the tests that start them;
and helpers several test modules use (`from conftest import ...`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import grpc
import pytest
import torch

from splitcast.edge.client import EdgeClient, EdgeResult
from splitcast.edge.loop import EdgeOptions, EdgeSummary, run_edge
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import ChildProcess, start_server
from splitcast.models.checkpoint import save_checkpoint
from splitcast.models.providers import CACHE_ENV
from splitcast.models.registry import build, get_config, with_bottleneck
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc


@pytest.fixture(autouse=True, scope="session")
def _private_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers and edges export their ONNX graphs into this session's folder, not the user's cache
    (child processes inherit the variable)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests share 2 cores with the server processes they start."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """A `splitcast serve --model tiny` child process on a free loopback port, reading frames
    as fast as they come (no --max-stream-fps cap), so that tests sending bursts see the
    mailbox's latest-wins drops rather than the cap's back-pressure."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    uncapped = ["--max-stream-fps", "0"]
    with start_server("tiny", threads=1, log_path=log_path, extra=uncapped) as process:
        yield process


@pytest.fixture
def stub(server: ChildProcess) -> Iterator[pb_grpc.SplitInferenceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SplitInferenceStub(channel)


@pytest.fixture(scope="session")
def learned_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder: the tiny configuration with an (untrained) 8-channel learned
    downlink codec whose integer tables are final, as training leaves them."""
    system = build(with_bottleneck(get_config("tiny"), width=8))
    assert system.bottleneck is not None
    with torch.no_grad():
        system.bottleneck.logits.normal_(0.0, 2.0, generator=torch.Generator().manual_seed(0))
    system.bottleneck.finalize_tables()
    folder = tmp_path_factory.mktemp("learned") / "tiny-learned"
    save_checkpoint(system, folder, {}, half=False)
    return folder


EdgeRun = Callable[[Path, Path], tuple[EdgeSummary, list[dict]]]


@pytest.fixture
def edge_against_own_server() -> EdgeRun:
    """`run(checkpoint, log_path)`: see `_edge_against_own_server`."""
    return _edge_against_own_server


def _edge_against_own_server(checkpoint: Path, log_path: Path) -> tuple[EdgeSummary, list[dict]]:
    """60 moving-scene frames through an edge and a real `splitcast serve` both running
    `checkpoint`; the summary and the edge's per-frame log."""
    with start_server(str(checkpoint), threads=1) as server:
        summary = run_edge(
            MovingSceneSource(num_frames=60),
            EdgeOptions(
                model=str(checkpoint),
                server=server.address,
                wait_for_server_s=30.0,
                log_path=log_path,
                progress=False,
            ),
        )
    return summary, [json.loads(line) for line in log_path.read_text().splitlines()]


def count_video_frames(path: Path) -> int:
    """How many frames opencv decodes from a video file."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def stream_frames(edge: EdgeClient, frames: int = 20) -> list[EdgeResult]:
    """The edge's results for `frames` frames of the moving scene at about 30 fps, once its
    stream to the server is up."""
    assert edge.wait_connected(30.0)
    results = []
    for rgb in MovingSceneSource(num_frames=frames).frames():
        results.append(edge.step(rgb))
        time.sleep(0.03)
    return results
