"""The edge always comes back: a real `splitcast edge` process against a server that is killed
with SIGKILL, restarted, replaced by one running another model and then by the right one
again, all on the same port. The edge's log says what happened to every frame."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitcast.edge.client import EdgeClient
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import ChildProcess, start_link, start_server
from splitcast.models.checkpoint import save_checkpoint
from splitcast.models.registry import build

FPS = 15


def _records(log: Path) -> list[dict]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _serving_at(address: str) -> int:
    """Poll health until SERVING; the wall-clock time it first said so (ns)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.time_ns()
            except grpc.RpcError:
                time.sleep(0.02)


def _serve(model: str, port: int, log: Path) -> ChildProcess:
    return start_server(model, threads=1, log_path=log, extra=["--port", str(port)])


def _after(records: list[dict], time_ns: int) -> list[dict]:
    return [r for r in records if r["capture_time_ns"] > time_ns]


def test_the_edge_survives_kill_restart_and_a_wrong_model_and_comes_back(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    save_checkpoint(build("tiny"), checkpoint, {"note": "untrained tiny"})
    first = start_server(str(checkpoint), threads=1, log_path=tmp_path / "server1.log")
    port, address = first.port, first.address
    log, summary = tmp_path / "edge.jsonl", tmp_path / "summary.json"
    edge = subprocess.Popen(
        [sys.executable, "-m", "splitcast", "edge", "--model", str(checkpoint), "--server", address,
         "--frames", "100000", "--fps", str(FPS), "--log", str(log), "--summary", str(summary)],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "edge.err").open("w"),
    )  # fmt: skip
    servers = [first]
    try:
        _wait_for(lambda: sum(r["mode"] == "combined" for r in _records(log)) >= 10, "answers")
        first.kill()
        killed = time.time_ns()
        _wait_for(lambda: len(_after(_records(log), killed)) >= 2 * FPS, "frames after the kill")

        servers.append(_serve(str(checkpoint), port, tmp_path / "server2.log"))
        restarted = _serving_at(address)
        _wait_for(lambda: len(_after(_records(log), restarted)) >= 2 * FPS, "frames after restart")
        servers[-1].stop()

        servers.append(_serve("tiny", port, tmp_path / "server3.log"))  # another model
        wrong = _serving_at(address)
        _wait_for(lambda: len(_after(_records(log), wrong)) >= 3 * FPS, "frames against it")
        servers[-1].stop()

        servers.append(_serve(str(checkpoint), port, tmp_path / "server4.log"))
        right = _serving_at(address)
        _wait_for(lambda: len(_after(_records(log), right)) >= 2 * FPS, "frames after the fix")
    finally:
        edge.send_signal(signal.SIGTERM)
        status = edge.wait(timeout=60)
        for server in servers:
            server.stop()
    assert status == 143, (tmp_path / "edge.err").read_text()[-2000:]
    records, result = _records(log), json.loads(summary.read_text())
    # an on-time output for every frame not skipped by pacing, whatever the server did
    assert (
        len(records) + result["skipped"]
        == records[-1]["frame"] + 1
        == result["frames"] + result["skipped"]
    )

    def between(start: int, end: int) -> list[dict]:
        return [r for r in records if start < r["capture_time_ns"] <= end]

    outage = between(killed + 10**9, restarted)  # answers more than 1 s old are past the cap
    assert outage and {r["mode"] for r in outage} == {"local_only"}
    assert {r["cause"] for r in outage} <= {"server_unreachable", "connecting"}
    for back in (restarted, right):
        first_used = next(r for r in _after(records, back) if r["mode"] == "combined")
        assert first_used["capture_time_ns"] - back < 10**9, "answers used again within 1 s"
    refused = between(wrong + 10**9, wrong + 3 * 10**9)
    assert refused and {(r["mode"], r["cause"]) for r in refused} == {
        ("local_only", "server_incompatible")
    }
    assert "incompatible" in (tmp_path / "edge.err").read_text()
    assert result["causes"]["server_incompatible"] > 0 and result["link"]["state"] == "connected"


@pytest.mark.parametrize(
    "flags",
    [["--stall-prob", "0.01", "--rto-ms", "1200"], ["--drops-per-min", "40"]],
    ids=["stalls", "drops"],
)
def test_an_edge_behind_a_link_that_stalls_or_drops_never_waits(
    server: ChildProcess, flags: list[str]
) -> None:
    """Stalls longer than the staleness cap and broken connections: every frame still gets
    its output without waiting for the network, and answers are used again afterwards."""
    frames = list(MovingSceneSource(num_frames=30).frames())
    results = []
    with (
        start_link(server.address, 5, extra=[*flags, "--seed", "3"]) as link,
        EdgeClient("tiny", server=link.address, fps=FPS) as client,
    ):
        assert client.wait_connected(30)
        start = time.perf_counter()
        for index in range(12 * FPS):
            time.sleep(max(0.0, start + index / FPS - time.perf_counter()))
            results.append(client.step(frames[index % len(frames)]))
        stats = client.stats
    assert stats is not None and len(results) == 12 * FPS
    assert max(r.latency_ms for r in results) < 1000, "a step waited for the network"
    causes = Counter(r.cause for r in results)
    assert causes[None] > FPS, f"answers were used: {causes}"
    if "--drops-per-min" in flags:
        assert stats.connects >= 2, "the link broke the stream and the edge reconnected"
        last_down = max(i for i, r in enumerate(results) if not r.connected)
        assert any(r.mode == "combined" for r in results[last_down:])
    else:
        assert causes["answer_too_old"] > 0, f"a stall made the freshest answer too old: {causes}"
