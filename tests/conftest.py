"""Shared fixtures: real server processes on 127.0.0.1, stopped by the tests that start them."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import torch

from splitcast.launch import ChildProcess, start_server
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests share 2 cores with the server processes they start."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """A `splitcast serve --model tiny` child process on a free loopback port."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with start_server("tiny", threads=1, log_path=log_path) as process:
        yield process


@pytest.fixture
def stub(server: ChildProcess) -> Iterator[pb_grpc.SplitInferenceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SplitInferenceStub(channel)
