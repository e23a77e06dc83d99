"""SIGTERM drains `splitcast serve`: health NOT_SERVING first, open streams end with OK, new
streams refused, exit 0; the edge keeps producing outputs and treats it as a reconnect."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import splitcast
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import start_server
from splitcast.models.registry import build


def _watch_health(address: str, statuses: list[tuple[float, int]], done: threading.Event) -> None:
    """Record (time, status) of every health update until the server goes away."""
    with grpc.insecure_channel(address) as channel:
        try:
            for reply in health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(), timeout=120
            ):
                statuses.append((time.monotonic(), reply.status))
        except grpc.RpcError:
            pass
    done.set()


def test_sigterm_drains_and_the_edge_reconnects_instead_of_failing(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    frames = list(MovingSceneSource(num_frames=90).frames())
    statuses: list[tuple[float, int]] = []
    watched = threading.Event()
    with start_server("tiny", threads=1, log_path=log_path) as server:
        threading.Thread(
            target=_watch_health, args=(server.address, statuses, watched), daemon=True
        ).start()
        edge = splitcast.EdgeClient(build("tiny"), server=server.address)
        edge.start()
        assert edge.wait_connected(30.0)
        results = []
        for rgb in frames[:30]:
            results.append(edge.step(rgb))
            time.sleep(0.03)
        assert edge.stats.answers_received > 0
        server.process.terminate()
        terminated = time.monotonic()
        for rgb in frames[30:]:  # the edge's outputs never stop
            results.append(edge.step(rgb))
            time.sleep(0.03)
        exit_code = server.process.wait(timeout=30)
        edge.close()
    assert exit_code == 0
    assert len(results) == len(frames)
    assert results[-1].mode in ("stale", "local_only") and not results[-1].connected
    assert watched.wait(10)
    assert statuses[0][1] == health_pb2.HealthCheckResponse.SERVING
    assert any(
        status == health_pb2.HealthCheckResponse.NOT_SERVING and at >= terminated
        for at, status in statuses
    ), statuses
    assert edge.stats.connects == 1
    assert edge.stats.frame_errors == 0 and edge.stats.decode_errors == 0
    deadline = time.monotonic() + 10  # the launcher copies the server's output on a thread
    while "drained and stopped" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "drained and stopped" in log_path.read_text()
