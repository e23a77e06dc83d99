"""`splitcast bench` on a real server, link and edge: every stage of a frame's trip measured
and consistent, the table, JSON, waterfall and videos written; and a run that used no answer
says why instead of failing."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import count_video_frames

from splitcast.bench import STAGES
from splitcast.edge.client import ANSWER_TOO_OLD
from splitcast.models.checkpoint import load_system, save_checkpoint


def _bench(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`splitcast bench` with 4 timed steps per variant, writing into `out`."""
    command = [sys.executable, "-m", "splitcast", "bench", "--steps", "4", "--out", str(out)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # keeps the default run within CI's time; `pytest -m slow` runs it
def test_bench_traces_every_stage_of_used_answers(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--model", "tiny", "--frames", "45", "--rtt-ms", "60", "--fps", "15")
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


@pytest.mark.slow  # a whole bench run, about a minute on 2 cores; `pytest -m slow` runs it
def test_bench_without_a_used_answer_says_why_and_writes_everything(tmp_path: Path) -> None:
    """A 333 ms answer horizon (10 ticks) and an 800 ms link: every answer reaches the edge
    over 24 frames old, so the link run uses none (on loopback, answers are used about 4 frames
    old). The bench still exits 0 and writes its table, JSON, waterfall and videos; the link's
    stages are not measured, and it says why."""
    system = load_system("tiny")
    short = replace(system, config=replace(system.config, horizon_ticks=10))
    checkpoint = tmp_path / "short-horizon"
    save_checkpoint(short, checkpoint, {})
    result = _bench(tmp_path, "--model", str(checkpoint), "--frames", "60", "--rtt-ms", "800")
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads((tmp_path / "bench.json").read_text())
    link = bench["link"]
    assert link["answers_traced"] == 0 and link["combined_fraction"] == 0
    assert link["stage_ms_p50"] == dict.fromkeys((stage for stage, _ in STAGES), None)
    assert link["trip_ms_p50"] is None
    assert link["max_staleness_frames"] == 10, "10 ticks at the model's 30 fps"
    assert sum(link["causes"].values()) == link["stepped"], "every frame stepped says why"
    assert link["causes"][ANSWER_TOO_OLD] > 0 and link["stale_d_o_p50_frames"] > 10
    assert link["server_time_p50_ms"] > 0
    assert f"answer_too_old on {link['causes'][ANSWER_TOO_OLD]} frames" in link["why_untraced"]
    assert bench["network"]["uplink_measured_ms"] is None
    assert bench["network"]["downlink_measured_ms"] is None
    assert "link" in bench["not_measured"]["network"]
    assert "link traced no answer: no answer was used; " in result.stdout
    assert "not measured: no answer traced (link)" in result.stdout
    assert (tmp_path / "waterfall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for run in (bench["loopback"], link):
        assert count_video_frames(Path(run["video"])) == run["stepped"]
