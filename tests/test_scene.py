"""The synthetic benchmark: deterministic builds, disjoint splits, real motion, small things."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from splitcast.data.build import build_split, clip_seed
from splitcast.data.clips import DataError, open_clips
from splitcast.data.scene.generator import OCCURRING_CLASSES, SceneSettings, render_clip
from splitcast.data.splits import DEFAULT_CLIPS, SPLIT_SEEDS
from splitcast.data.stats import dataset_stats

SMALL = SceneSettings(height=64)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_rebuilding_with_the_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = build_split(
        tmp_path / "a", "val", clips=3, frames=6, settings=SMALL, workers=2, progress=False
    )
    build_split(tmp_path / "b", "val", clips=3, frames=6, settings=SMALL, workers=1, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert first.clips == 3 and first.rendered_clips == 3
    assert len(a) == 3 * (6 * 2 + 1) + 2
    assert a == b


def test_another_seed_gives_another_street(tmp_path: Path) -> None:
    build_split(tmp_path / "a", "val", clips=1, frames=2, settings=SMALL, progress=False)
    build_split(tmp_path / "b", "val", clips=1, frames=2, settings=SMALL, seed=7, progress=False)
    assert (
        _files(tmp_path / "a")["clip_0000/labels/000000.png"]
        != _files(tmp_path / "b")["clip_0000/labels/000000.png"]
    )


def test_split_seeds_are_disjoint() -> None:
    seeds = {
        split: {clip_seed(seed, i) for i in range(DEFAULT_CLIPS[split])}
        for split, seed in SPLIT_SEEDS.items()
    }
    assert not seeds["train"] & seeds["val"]
    assert not seeds["train"] & seeds["test"]
    assert not seeds["val"] & seeds["test"]


def test_interrupted_build_resumes_and_changed_settings_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "val"
    build_split(out, "val", clips=2, frames=3, settings=SMALL, progress=False)
    (out / "meta.json").unlink()
    finished = (out / "clip_0001" / "frames" / "000000.jpg").stat().st_mtime_ns
    shutil.rmtree(out / "clip_0000")
    report = build_split(out, "val", clips=2, frames=3, settings=SMALL, progress=False)
    assert report.rendered_clips == 1
    assert (out / "clip_0001" / "frames" / "000000.jpg").stat().st_mtime_ns == finished
    assert len(open_clips(out)) == 2
    with pytest.raises(DataError, match="different settings"):
        build_split(out, "val", clips=2, frames=4, settings=SMALL, progress=False)


def test_labels_are_exact_class_ids_and_match_frames(tmp_path: Path) -> None:
    build_split(
        tmp_path,
        "train",
        clips=2,
        frames=4,
        settings=SceneSettings(height=96, width=160),
        progress=False,
    )
    dataset = open_clips(tmp_path)
    assert dataset.meta.fps == 30.0 and dataset.meta.num_classes == 19
    for clip in dataset.clips:
        assert clip.labelled == (0, 1, 2, 3)
        for index in clip.labelled:
            frame, label = clip.frame(index), clip.label(index)
            assert frame.shape == (96, 160, 3) and label.shape == (96, 160)
            assert set(np.unique(label).tolist()) <= set(OCCURRING_CLASSES)


def test_motion_scale_moves_the_scene_faster() -> None:
    def change(motion: float) -> float:
        fractions = []
        for seed in range(4):
            labels = [
                label for _, label in render_clip(seed, SceneSettings(height=96, motion=motion), 6)
            ]
            fractions.append(np.mean(labels[0] != labels[-1]))
        return float(np.mean(fractions))

    assert change(2.0) > change(1.0) > 0.0


@pytest.mark.slow  # keeps the default run within CI's time; `pytest -m slow` runs it
def test_validation_like_split_moves_and_has_small_things(tmp_path: Path) -> None:
    """A few clips at the default resolution already show the benchmark's properties."""
    build_split(tmp_path, "val", clips=6, progress=False)
    stats = dataset_stats(open_clips(tmp_path), progress=False)
    print(json.dumps(stats["stale_miou"]))
    for row in stats["stale_miou"].values():
        assert row[0] == 100.0
        assert all(b <= a + 0.5 for a, b in itertools.pairwise(row)), row
    for d in range(1, 11):
        assert stats["stale_miou"]["2"][d] < stats["stale_miou"]["1"][d]
        assert stats["stale_miou"]["3"][d] < stats["stale_miou"]["2"][d]
    assert stats["stale_miou"]["1"][3] < 80.0
    assert len(stats["classes_below_0.5_percent"]) >= 5


def test_data_cli_builds_and_reports_stats_as_json(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    build = subprocess.run(
        [
            sys.executable, "-m", "splitcast", "data", "build", "--split", "test", "--clips", "1",
            "--frames", "41", "--height", "48", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    assert "built 1 clips x 41 frames" in build.stdout
    stats = subprocess.run(
        [sys.executable, "-m", "splitcast", "data", "stats", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert stats.returncode == 0, stats.stderr
    parsed = json.loads(stats.stdout)
    assert set(parsed["stale_miou"]) == {"1", "2", "3"}
    assert all(len(row) == 11 for row in parsed["stale_miou"].values())
    assert set(parsed) >= {"class_frequency", "stale_miou", "small_classes"}


def test_data_cli_errors_are_readable(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "splitcast", "data", "stats", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert "dataset directory not found" in missing.stderr and "Traceback" not in missing.stderr
