"""`splitcast fit` end to end on a tiny synthetic split: the split is by clip, the test clips
decide nothing, the checkpoint loads and serves, a stopped fit resumes, and the bootstrap and
safe-choice pieces it rests on do what they say."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splitcast.data.build import build_split
from splitcast.data.clips import DataError
from splitcast.data.metrics import bootstrap_gain
from splitcast.data.scene.generator import SceneSettings
from splitcast.data.splits import split_by_clip
from splitcast.models.checkpoint import load_checkpoint

MAX_DELAY = 3
FIT = (
    "fit", "--config", "tiny", "--delays", f"0-{MAX_DELAY}", "--max-steps", "6",
    "--workers", "0", "--batch-size", "4", "--calib-fraction", "0.3", "--test-fraction", "0.3",
    "--every", "1", "--seed", "5",
)  # fmt: skip


def _fit(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "splitcast", *FIT, "--data", str(data), "--out", str(out)]
    return subprocess.run([*command, *extra], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 clips of 16 frames at 10 fps (a tick is then 100 ms)."""
    root = tmp_path_factory.mktemp("fit") / "clips"
    build_split(
        root, "train", clips=7, frames=16, settings=SceneSettings(height=96, fps=10.0),
        progress=False,
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def fitted(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fit") / "run"
    result = _fit(clips, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "What the cloud bought" in result.stdout
    return out


def _listed(folder: Path) -> list[str]:
    return json.loads((folder / "meta.json").read_text())["clips"]


def test_the_split_is_by_clip_and_each_step_reads_only_its_part(clips: Path, fitted: Path) -> None:
    state = json.loads((fitted / "fit.json").read_text())
    split = state["done"]["split"]
    parts = [set(split[name]) for name in ("train", "calib", "test")]
    assert all(parts) and sum(map(len, parts)) == 7
    assert set.union(*parts) == set(_listed(clips))
    for name, part in zip(("train", "calib", "test"), parts, strict=True):
        assert set(_listed(fitted / "split" / name)) == part
    _, trained = load_checkpoint(fitted / "train" / "base")
    assert Path(trained["data"]["train"]) == fitted / "split" / "train"
    for combiner in ("feature_fusion", "late_average"):
        calibration = json.loads((fitted / "calibrate" / combiner / "calibration.json").read_text())
        assert Path(calibration["data"]) == fitted / "split" / "calib"
        local_only = calibration["local_only"]
        for row, chosen in zip(calibration["gain_grid"], calibration["chosen"], strict=True):
            assert row[calibration["candidates"].index(chosen)] >= local_only


def test_the_checkpoint_loads_and_the_report_covers_every_delay(fitted: Path) -> None:
    system, meta = load_checkpoint(fitted / "checkpoint")
    state = json.loads((fitted / "fit.json").read_text())
    assert system.config.version == state["done"]["checkpoint"]["version"]
    assert system.config.combiner == state["done"]["checkpoint"]["combiner"]
    assert system.config.fps == 10.0  # ticks of the data it was trained on
    assert len(system.config.policy[system.config.combiner]) == MAX_DELAY + 1
    assert meta["fit"]["split"] == state["done"]["split"]
    report = json.loads((fitted / "report" / "report.json").read_text())
    assert [row["delay_ticks"] for row in report["rows"]] == list(range(MAX_DELAY + 1))
    assert report["test_clips"] == len(state["done"]["split"]["test"])
    for row in report["rows"]:
        gain = row["gain"]
        assert gain["low"] <= gain["gain"] <= gain["high"]
        assert gain["gain"] == pytest.approx(row["fitted"] - row["local_only"], abs=0.02)
        if row["verdict"] == "local_only":
            assert row["fitted"] == row["local_only"]
    assert (fitted / "report" / "report.png").stat().st_size > 10_000
    assert len((fitted / "report" / "report.csv").read_text().splitlines()) == MAX_DELAY + 2
    assert report["summary"] and all(s in (fitted / "report" / "report.md").read_text()
                                     for s in report["summary"])  # fmt: skip


def test_the_test_clips_decide_nothing(clips: Path, fitted: Path, tmp_path: Path) -> None:
    """Scramble every test clip's labels and frames: the same fit chooses exactly the same
    weights, policies and combiner; only the report's figures change."""
    split = json.loads((fitted / "fit.json").read_text())["done"]["split"]
    scrambled = tmp_path / "clips"
    shutil.copytree(clips, scrambled)
    rng = np.random.default_rng(0)
    for name in split["test"]:
        for path in [
            *(scrambled / name / "frames").iterdir(),
            *(scrambled / name / "labels").iterdir(),
        ]:
            image = np.asarray(Image.open(path))
            noise = rng.integers(0, 256 if path.parent.name == "frames" else 4, image.shape)
            Image.fromarray(noise.astype(np.uint8)).save(path)
    again = _fit(scrambled, tmp_path / "run")
    assert again.returncode == 0, again.stderr[-3000:]
    first = json.loads((fitted / "fit.json").read_text())["done"]
    second = json.loads((tmp_path / "run" / "fit.json").read_text())["done"]
    assert second["split"] == first["split"]
    assert second["checkpoint"] == first["checkpoint"]  # same version: weights and policies
    assert second["report"]["summary"] != first["report"]["summary"] or (
        (tmp_path / "run" / "report" / "report.json").read_text()
        != (fitted / "report" / "report.json").read_text()
    )


def test_a_stopped_fit_resumes_and_other_settings_are_refused(fitted: Path, clips: Path) -> None:
    state_path = fitted / "fit.json"
    state = json.loads(state_path.read_text())
    state["done"].pop("report")
    state_path.write_text(json.dumps(state))
    shutil.rmtree(fitted / "report")
    resumed = _fit(clips, fitted)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "training stage" not in resumed.stdout and "calibrating" not in resumed.stdout
    assert (fitted / "report" / "report.md").is_file()
    other = _fit(clips, fitted, "--seed", "6")
    assert other.returncode == 2 and "other settings (seed)" in other.stderr
    assert "Traceback" not in other.stderr


def test_the_fitted_checkpoint_serves_a_live_edge(fitted: Path, tmp_path: Path,
                                                  edge_against_own_server) -> None:  # fmt: skip
    summary, records = edge_against_own_server(fitted / "checkpoint", tmp_path / "edge.jsonl")
    assert summary.frames == 60 and len(records) == 60
    assert summary.combined + summary.stale > 0  # answers came back from the server


def test_split_by_clip_is_seeded_and_refuses_too_few_clips(caplog) -> None:
    names = [f"c{i}" for i in range(10)]
    split = split_by_clip(names, 0.2, 0.3, seed=1)
    assert split == split_by_clip(names, 0.2, 0.3, seed=1)
    assert (len(split.train), len(split.calib), len(split.test)) == (5, 2, 3)
    assert split != split_by_clip(names, 0.2, 0.3, seed=2)
    assert "very few clips" in caplog.text
    with pytest.raises(DataError, match="at least 3 clips"):
        split_by_clip(names[:2], 0.2, 0.2, seed=0)
    with pytest.raises(DataError, match="none to train on"):
        split_by_clip(names[:4], 0.4, 0.4, seed=0)


def test_bootstrap_gain_over_clips() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.integers(0, 50, (6, 3, 3))
    same = bootstrap_gain(baseline, baseline)
    assert (same.gain, same.low, same.high, same.above_zero) == (0.0, 0.0, 0.0, 0.0)
    better = baseline.copy()
    better[:, [0, 1, 2], [0, 1, 2]] += 40  # more true positives in every clip
    gain = bootstrap_gain(better, baseline)
    assert 0 < gain.low <= gain.gain <= gain.high and gain.above_zero == 1.0
    mixed = baseline.copy()
    mixed[:3, [0, 1, 2], [0, 1, 2]] += 40
    mixed[3:, 0, 1] += 200  # worse in the other half
    assert bootstrap_gain(mixed, baseline).low < 0 < bootstrap_gain(mixed, baseline).high
    with pytest.raises(ValueError, match="per-clip counts"):
        bootstrap_gain(baseline, baseline[:3])


def test_calibration_and_test_folders_of_their_own_are_used_whole(
    fitted: Path, tmp_path: Path
) -> None:
    split = fitted / "split"
    result = _fit(
        split / "train", tmp_path / "run", "--calib-data", str(split / "calib"),
        "--test-data", str(split / "test"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "split as given" in result.stdout
    first = json.loads((fitted / "fit.json").read_text())["done"]["split"]
    again = json.loads((tmp_path / "run" / "fit.json").read_text())["done"]["split"]
    assert {k: sorted(v) for k, v in again.items() if k != "seed"} == {
        k: sorted(v) for k, v in first.items() if k != "seed"
    }
    load_checkpoint(tmp_path / "run" / "checkpoint")
    alone = _fit(split / "train", tmp_path / "alone", "--calib-data", str(split / "calib"))
    assert alone.returncode != 0 and "together" in alone.stderr
