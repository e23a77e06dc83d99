"""`splitcast bench` on a real server, link and edge: every stage of a frame's trip measured
and consistent, the table, JSON, waterfall and videos written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import count_video_frames

from splitcast.bench import STAGES


@pytest.mark.slow  # keeps the default run within CI's time; `pytest -m slow` runs it
def test_bench_traces_every_stage_of_used_answers(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "splitcast", "bench", "--model", "tiny", "--frames", "45"]
    result = subprocess.run(
        [*command, "--steps", "4", "--rtt-ms", "60", "--fps", "15", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "one frame's trip (ms, p50)" in result.stdout and "goals:" in result.stdout
    bench = json.loads((tmp_path / "bench.json").read_text())
    for run in (bench["loopback"], bench["link"]):
        assert run["answers_traced"] > 0
        stages = run["stage_ms_p50"]
        assert list(stages) == [stage for stage, _ in STAGES]
        assert all(value >= 0 for value in stages.values()), stages
        assert abs(sum(stages.values()) - run["trip_ms_p50"]) < 0.05
        assert count_video_frames(Path(run["video"])) == run["stepped"]
    # the relay holds each message at least its 30 ms each way
    assert bench["network"]["uplink_measured_ms"] > 25
    assert bench["network"]["downlink_measured_ms"] > 25
    for step in bench["edge_step"].values():
        assert step["ids_equal_to_first"] >= 0.999
        assert step["with_answer_ms_p50"] > 0 and step["local_only_ms_p50"] > 0
    assert (tmp_path / "waterfall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "export" / "manifest.json").is_file()
