"""`splitcast loadgen` against a real server: paced and flooding streams reported apart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import splitcast
from splitcast.cloud.options import ServeOptions
from splitcast.launch import start_server
from splitcast.models.registry import build


def test_loadgen_reports_paced_and_flooding_streams(tmp_path: Path) -> None:
    with start_server("tiny", threads=1) as server:
        result = subprocess.run(
            [sys.executable, "-m", "splitcast", "loadgen", "--server", server.address,
             "--streams", "3", "--flood", "1", "--duration", "4", "--fps", "10",
             "--json", str(tmp_path / "load.json")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "answers/s" in result.stdout and "flooding_streams" in result.stdout
    report = json.loads((tmp_path / "load.json").read_text())
    paced, flood = report["paced"], report["flooding_streams"]
    assert (paced["streams"], flood["streams"]) == (2, 1)
    assert paced["answers_per_s"] > 0 and flood["answers_per_s"] > 0
    assert paced["latency_p50_ms"] <= paced["latency_p99_ms"]
    assert flood["frames_sent"] > paced["frames_sent"] / 2  # it offered far more than 10 fps
    assert sum(report["all"]["errors"].values()) == 0


def test_loadgen_without_a_server_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "splitcast", "loadgen", "--server", "127.0.0.1:1",
         "--duration", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no server at 127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_a_short_soak_answers_every_malformed_message_and_watches_memory(tmp_path: Path) -> None:
    """Malformed frames get FrameErrors, bytes that are no protobuf end their call with
    INVALID_ARGUMENT, the paced streams keep their answers, memory is sampled, the server
    lives (the 60 s soak's figures are in docs/reliability.md)."""
    options = ServeOptions(metrics_port=0, max_stream_fps=0)
    with splitcast.serve(build("tiny"), options=options) as server:
        result = subprocess.run(
            [sys.executable, "-m", "splitcast", "loadgen", "--server", server.address,
             "--streams", "2", "--duration", "5", "--fps", "10", "--malformed-rate", "40",
             "--malformed-streams", "2", "--warm-up", "2", "--metrics-url",
             f"http://127.0.0.1:{server.metrics_port}/metrics", "--json", str(tmp_path / "s.json")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "server survived: yes" in result.stdout
    report = json.loads((tmp_path / "s.json").read_text())
    malformed = report["malformed"]
    assert malformed["sent"] >= 40 and malformed["answered_fraction"] == 1.0, malformed
    assert set(malformed["by_kind"]) >= {"not_protobuf", "not_an_image", "bad_delay"}
    assert report["paced"]["answers_per_s"] > 0 and sum(report["all"]["errors"].values()) == 0
    memory = report["server_memory"]
    assert memory["read_errors"] == 0 and len(memory["samples"]) >= 4
    assert memory["start_mb"] > 0 and "growth_after_warm_up" in memory
