"""Sources a camera user has: a folder of images, cameras and streams (a clear error when they
cannot be opened, frames dropped rather than queued when the edge is slower), and a source
that stops mid-run leaving a readable video and a complete log."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import count_video_frames

from splitcast.edge.sources import (
    CaptureSource,
    MovingSceneSource,
    SourceError,
    open_source,
    read_ahead,
)


def _splitcast(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "splitcast", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _image_folder(folder: Path, count: int) -> list[np.ndarray]:
    folder.mkdir()
    frames = list(MovingSceneSource(num_frames=count).frames())
    for index, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"frame{index:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return frames


def test_a_folder_of_images_is_a_source(tmp_path: Path) -> None:
    frames = _image_folder(tmp_path / "images", 8)
    source = open_source(str(tmp_path / "images"), fps=10.0)
    assert (source.fps, source.num_frames, source.live) == (10.0, 8, False)
    np.testing.assert_array_equal(next(iter(source.frames())), frames[0])
    with pytest.raises(SourceError, match="holds no"):
        open_source(str(tmp_path))


def test_a_source_that_stops_mid_run_leaves_a_readable_video_and_a_complete_log(
    tmp_path: Path,
) -> None:
    _image_folder(tmp_path / "images", 10)
    (tmp_path / "images" / "frame006.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = _splitcast(
        "edge", "--model", "tiny", "--source", str(tmp_path / "images"), "--fast",
        "--video", str(out / "edge.mp4"), "--log", str(out / "edge.jsonl"),
        "--summary", str(out / "summary.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cannot read" in result.stderr and "frame006.png" in result.stderr
    records = [json.loads(line) for line in (out / "edge.jsonl").read_text().splitlines()]
    assert [record["frame"] for record in records] == list(range(6))
    assert count_video_frames(out / "edge.mp4") == 6
    assert json.loads((out / "summary.json").read_text())["frames"] == 6


@pytest.mark.parametrize(
    ("spec", "message"),
    [("99", "cannot open camera '99'"), ("http://127.0.0.1:1/x.mjpg", "cannot open stream")],
)
def test_a_camera_or_stream_that_cannot_be_opened_is_a_clear_error(spec: str, message: str) -> None:
    result = _splitcast("edge", "--model", "tiny", "--source", spec, "--frames", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "backends:" in result.stderr


def test_a_live_source_drops_frames_the_edge_is_too_slow_for(tmp_path: Path) -> None:
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (128, 64))
    for rgb in MovingSceneSource(width=128, height=64, num_frames=60).frames():
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    source = CaptureSource(str(video))  # opencv reads it as fast as a camera would deliver
    assert source.live
    taken = 0
    for _ in source.frames():
        taken += 1
        time.sleep(0.02)  # an edge slower than the source
    assert source.dropped > 0
    assert taken + source.dropped == 60  # every frame either reached the edge or was dropped


def test_a_source_read_ahead_keeps_order_raises_its_error_and_stops_when_closed() -> None:
    frames = list(MovingSceneSource(num_frames=12).frames())

    def failing() -> Iterator[np.ndarray]:
        yield from frames[:5]
        raise SourceError("the camera went away")

    read = read_ahead(failing(), depth=2)
    got = [next(read) for _ in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(got, frames[:5], strict=True))
    with pytest.raises(SourceError, match="went away"):
        next(read)
    started = threading.active_count()
    partly = read_ahead(iter(frames), depth=2)
    next(partly)
    partly.close()  # the edge stopped early: the reading thread ends with it
    assert threading.active_count() <= started
