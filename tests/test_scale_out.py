"""examples/scale-out: nginx (grpc_pass) in front of two real `splitcast serve` replicas.
Four edges spread over both and stay put; killing one replica moves its edges to the other,
and every edge keeps an on-time output for every frame and uses answers again."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

import splitcast
from splitcast.edge.client import EdgeResult
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import start_server
from splitcast.models.registry import build

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "scale-out" / "nginx.conf"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _active_streams(metrics_port: int) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return float(re.search(r"^splitcast_active_streams (\S+)$", text, re.M).group(1))


def _config(prefix: Path, listen: int, replicas: list[int]) -> Path:
    """The example's configuration with this test's ports."""
    text = EXAMPLE.read_text()
    text = text.replace("listen 127.0.0.1:50051", f"listen 127.0.0.1:{listen}")
    for example, port in zip((50061, 50062), replicas, strict=True):
        text = text.replace(f"127.0.0.1:{example} ", f"127.0.0.1:{port} ")
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(text)
    return config


@contextmanager
def _nginx(prefix: Path, listen: int, replicas: list[int]) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(_config(prefix, listen, replicas))],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.1)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def _drive(edge: splitcast.EdgeClient, frames: list, results: list, stop: threading.Event):
    for rgb in frames:
        if stop.is_set():
            break
        results.append(edge.step(rgb))
        time.sleep(0.06)


def test_streams_spread_over_replicas_and_move_when_one_dies(tmp_path: Path) -> None:
    metrics = [_free_port(), _free_port()]
    listen = _free_port()
    frames = list(MovingSceneSource(num_frames=400).frames())
    results: list[list[EdgeResult]] = [[] for _ in range(4)]
    stop = threading.Event()
    with ExitStack() as stack:
        replicas = [
            stack.enter_context(start_server("tiny", threads=1, extra=["--metrics-port", str(p)]))
            for p in metrics
        ]
        stack.enter_context(_nginx(tmp_path / "nginx", listen, [r.port for r in replicas]))
        stack.callback(stop.set)
        edges = []
        for _ in range(4):
            edge = stack.enter_context(
                splitcast.EdgeClient(build("tiny"), server=f"127.0.0.1:{listen}")
            )
            assert edge.wait_connected(30.0)
            edges.append(edge)
        drivers = [
            threading.Thread(target=_drive, args=(edge, frames, out, stop), daemon=True)
            for edge, out in zip(edges, results, strict=True)
        ]
        for driver in drivers:
            driver.start()
        time.sleep(3.0)
        spread = [_active_streams(port) for port in metrics]
        assert sum(spread) == 4 and min(spread) >= 1, spread
        before = [len(out) for out in results]
        replicas[0].kill()
        deadline = time.monotonic() + 30
        while _active_streams(metrics[1]) < 4:
            assert time.monotonic() < deadline, "the edges did not move to the live replica"
            time.sleep(0.2)
        time.sleep(3.0)
        stop.set()
        for driver in drivers:
            driver.join(timeout=30)
    for index, out in enumerate(results):
        assert len(out) > before[index] + 40  # outputs never stopped through the kill
        assert [r.frame for r in out] == list(range(len(out)))  # one output per frame
        assert any(r.mode == "combined" for r in out[-30:]), index  # answers again, from B
    assert all(edge.stats.decode_errors == 0 for edge in edges)
