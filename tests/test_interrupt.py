"""Stopping a run with SIGTERM (a service manager, a container runtime, `timeout`) or Ctrl-C
keeps what it did: videos finalised and readable, logs ending on a complete line, summaries
and results written whole, child processes stopped, and an exit status that says so."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import count_video_frames

from splitcast.data.build import build_split
from splitcast.data.scene.generator import SceneSettings
from splitcast.models.checkpoint import save_checkpoint
from splitcast.models.registry import build

SPLITCAST = [sys.executable, "-m", "splitcast"]


def _stop_when(
    process: subprocess.Popen, ready: Callable[[], bool], signum: int, stderr: Path
) -> int:
    """Send `signum` once `ready()` holds; the exit status."""
    deadline = time.monotonic() + 180
    while not ready():
        assert process.poll() is None, f"ended before the signal: {stderr.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.05)
    process.send_signal(signum)
    return process.wait(timeout=120)


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (read from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_edge_keeps_its_video_log_and_summary(tmp_path: Path, signum: int) -> None:
    video, log, summary = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "s.json"
    stderr = tmp_path / "stderr.txt"
    process = subprocess.Popen(
        [*SPLITCAST, "edge", "--model", "tiny", "--frames", "100000", "--video", str(video),
         "--log", str(log), "--summary", str(summary)],
        stdout=subprocess.DEVNULL, stderr=stderr.open("w"),
    )  # fmt: skip
    status = _stop_when(process, lambda: _lines(log) >= 20, signum, stderr)
    name = signal.Signals(signum).name
    assert status == 128 + signum, stderr.read_text()[-2000:]
    assert f"stopped by {name}" in stderr.read_text()
    result = json.loads(summary.read_text())
    assert result["stopped_by"] == name and result["frames"] >= 20
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert log.read_text().endswith("\n") and len(records) == result["frames"]
    assert [r["frame"] for r in records] == sorted(r["frame"] for r in records)
    assert count_video_frames(video) == result["frames"]


def test_a_stopped_demo_keeps_its_outputs_and_stops_server_and_link(tmp_path: Path) -> None:
    out, stderr = tmp_path / "demo", tmp_path / "stderr.txt"
    process = subprocess.Popen(
        [*SPLITCAST, "demo", "--model", "tiny", "--frames", "100000", "--rtt-ms", "40",
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=stderr.open("w"),
    )  # fmt: skip
    children: list[int] = []

    def ready() -> bool:
        children[:] = _children(process.pid)
        return _lines(out / "demo.jsonl") >= 20

    status = _stop_when(process, ready, signal.SIGTERM, stderr)
    assert status == 143, stderr.read_text()[-2000:]
    assert len(children) >= 2, "the demo runs a server and a link"
    assert not any(_alive(pid) for pid in children), "server or link left running"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "SIGTERM" and summary["frames"] >= 20
    assert _lines(out / "demo.jsonl") == summary["frames"]
    assert count_video_frames(out / "demo.mp4") == summary["frames"]


def test_a_stopped_evaluation_writes_results_for_the_clips_it_scored(tmp_path: Path) -> None:
    data, checkpoint = tmp_path / "val", tmp_path / "ckpt"
    build_split(data, "val", clips=4, frames=14, settings=SceneSettings(height=96), progress=False)
    save_checkpoint(build("tiny"), checkpoint, {"note": "untrained tiny"})
    out, stderr = tmp_path / "eval", tmp_path / "stderr.txt"
    process = subprocess.Popen(
        [*SPLITCAST, "evaluate", "--checkpoint", str(checkpoint), "--data", str(data),
         "--delays", "0,3", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=stderr.open("w"),
        env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip

    def one_clip_scored() -> bool:
        return re.search(r"evaluate s=1: .*\b[123]/4\b", stderr.read_text()) is not None

    status = _stop_when(process, one_clip_scored, signal.SIGTERM, stderr)
    assert status == 143, stderr.read_text()[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["stopped_by"] == "SIGTERM"
    scored = int(results["clips_scored"].split(" of ")[0])
    assert 1 <= scored < 4 and results["targets"] > 0
    assert (out / "results.csv").read_text().count("\n") == 3  # header and two delays
