"""Evaluation bookkeeping on a tiny split, and one live run through the real transport."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from splitcast.calibrate import CalibrationError, CalibrationRequest, calibrate
from splitcast.data.build import build_split
from splitcast.data.clips import open_clips
from splitcast.data.metrics import ConfusionMatrix
from splitcast.data.scene.generator import SceneSettings
from splitcast.evaluate import EvaluationRequest, evaluate_offline, format_table
from splitcast.live_eval import LiveRequest, evaluate_live, gain_line
from splitcast.models.answers import AnswerUse, use_at
from splitcast.models.checkpoint import load_checkpoint, save_checkpoint
from splitcast.models.layers import resize
from splitcast.models.registry import build
from splitcast.models.score_tables import METHODS
from splitcast.sweep import SweepRequest, run_sweep

DELAYS = [0.0, 1.0, 2.0, 3.0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    build_split(
        root / "val", "val", clips=2, frames=14, settings=SceneSettings(height=96), progress=False
    )
    save_checkpoint(build("tiny"), root / "ckpt", {"note": "untrained tiny"})
    return root / "val", root / "ckpt"


def test_offline_results_files_and_bookkeeping(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, checkpoint = setup
    request = EvaluationRequest(
        checkpoint=str(checkpoint), data=data, out=tmp_path, delays=DELAYS, mismatch=True,
        mismatch_every=1, strides=[1, 2], progress=False,
    )  # fmt: skip
    results = evaluate_offline(request)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved) >= {
        "fps",
        "delays",
        "rtt_ms",
        "miou",
        "per_class_iou",
        "checkpoint",
        "data",
        "config",
    }
    assert saved["rtt_ms"] == [0.0, 33.3, 66.7, 100.0]
    miou = results["miou"]
    assert set(miou) == set(METHODS) and all(len(v) == len(DELAYS) for v in miou.values())
    assert len(set(miou["local_only"])) == 1 and len(set(miou["oracle"])) == 1
    assert miou["remote_stale_image"][0] == miou["oracle"][0]
    assert miou["remote_stale_video"][0] == miou["remote_predictive"][0]
    diagonal = [results["mismatch"]["matrix"][i][i] for i in range(len(DELAYS))]
    assert diagonal == miou["dedelayed"]
    for gain, fused in zip(saved["gain_over_local_only"], miou["dedelayed"], strict=True):
        assert gain["gain"] == pytest.approx(fused - miou["local_only"][0], abs=0.02)
        assert gain["low"] <= gain["gain"] <= gain["high"]
    assert "gain over local-only" in format_table(results)
    assert set(results["by_stride"]) == {"1", "2"}
    rows = list(csv.reader((tmp_path / "results.csv").open()))
    assert rows[0][:2] == ["delay_ticks", "delay_ms"] and len(rows) == len(DELAYS) + 1
    assert (tmp_path / "miou_vs_delay.png").stat().st_size > 10_000
    assert (tmp_path / "mismatch.png").stat().st_size > 10_000


def test_local_only_matches_an_independent_computation(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    data, checkpoint = setup
    results = evaluate_offline(
        EvaluationRequest(str(checkpoint), data, tmp_path, DELAYS, progress=False)
    )
    system = build("tiny")
    dataset = open_clips(data)
    matrix = ConfusionMatrix(19)
    with torch.inference_mode():
        for clip in dataset.clips:
            for t in range(6, clip.num_frames):  # targets valid for d = 3 with K = 4
                rgb = torch.from_numpy(clip.frame(t)).permute(2, 0, 1).float()[None] / 255
                frame = resize(rgb, system.config.local_size)
                logits = resize(system.local(frame), clip.frame(t).shape[:2])
                matrix.update(
                    logits.argmax(1), torch.from_numpy(clip.label(t).astype(np.int64))[None]
                )
    assert results["targets"] == 2 * (14 - 6)
    assert abs(results["miou"]["local_only"][0] - matrix.miou()) < 0.5


def test_codec_byte_figures_and_rate_sweep(
    setup: tuple[Path, Path], learned_tiny: Path, tmp_path: Path
) -> None:
    data, _ = setup
    results = evaluate_offline(
        EvaluationRequest(
            str(learned_tiny), data, tmp_path, [3.0], rate_sweep=[str(learned_tiny)],
            progress=False,
        )
    )  # fmt: skip
    assert results["codec"] == "learned"
    targets = results["targets"]
    down = results["downlink_bytes_per_frame"]
    assert 0 < down["mean"] <= down["p95"]
    assert results["downlink_kbps"] == pytest.approx(down["mean"] * 8 * 30 / 1000, abs=0.1)
    assert results["uplink_bytes_per_frame"]["mean"] > 1000 and results["uplink_kbps"] > 0
    rate = results["rate"]
    raw, int8 = rate["references"]["raw-fp16"], rate["references"]["int8-zstd"]
    learned = rate["learned"][0]
    assert (learned["width"], learned["stride"]) == (8, 2), "the learned_tiny bottleneck"
    assert raw["downlink_bytes_per_frame"]["mean"] == rate["raw_fp32_bytes_per_frame"] / 2
    assert learned["downlink_bytes_per_frame"]["mean"] == down["mean"]
    assert learned["dedelayed"] == results["miou"]["dedelayed"][0]
    assert int8["downlink_bytes_per_frame"]["mean"] < raw["downlink_bytes_per_frame"]["mean"]
    assert rate["local_only"] == results["miou"]["local_only"][0] and targets > 0
    assert (tmp_path / "rate_accuracy.png").stat().st_size > 10_000


def test_policy_records_by_age() -> None:
    config = build("tiny").config
    assert use_at((), 7.0) == AnswerUse(1.0)
    gained = config.with_policy("feature_fusion", [AnswerUse(1.0), AnswerUse(0.75), AnswerUse(0.5)])
    policy = gained.policy["feature_fusion"]
    assert [use_at(policy, age).weight for age in (0, 0.4, 0.5, 1.6, 2, 9)] == [
        1.0, 1.0, 0.75, 0.5, 0.5, 0.5,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="answer weights"):
        config.with_policy("feature_fusion", [])
    with pytest.raises(ValueError, match="answer weights"):
        config.with_policy("feature_fusion", [AnswerUse(1.0), AnswerUse(-0.5)])


def test_calibration_grid_picks_the_best_gain_and_the_edge_setting_applies_it(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    data, checkpoint = setup
    result = calibrate(
        CalibrationRequest(
            str(checkpoint), data, tmp_path, max_delay=3, weights=[0.0, 1.0, 3.0], every=1,
            confidence=0.0, progress=False,
        )
    )  # fmt: skip
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["chosen"] == result["chosen"]
    chosen_gains = [record["weight"] for record in result["chosen"]]
    grid = result["gain_grid"]
    assert len(grid) == 4 and all(len(row) == 3 for row in grid)
    assert all(row[0] == result["local_only"] for row in grid)  # gain 0 is local-only
    as_trained = evaluate_offline(
        EvaluationRequest(str(checkpoint), data, tmp_path / "before", DELAYS, progress=False)
    )
    assert [row[1] for row in grid] == as_trained["miou"]["dedelayed"]  # gain 1 is as trained
    # the best unrounded score per age: among the best rounded ones
    gains = [0.0, 1.0, 3.0]
    assert all(row[gains.index(g)] == max(row) for g, row in zip(chosen_gains, grid, strict=True))
    assert (tmp_path / "gain_calibration.png").stat().st_size > 10_000
    calibrated, meta = load_checkpoint(tmp_path / "checkpoint")
    assert [u.weight for u in calibrated.config.policy["feature_fusion"]] == chosen_gains
    assert calibrated.config.horizon_ticks == 3, "the last calibrated age is the horizon"
    assert meta["calibrated_from"]["checkpoint"] == str(checkpoint)
    rescored = evaluate_offline(
        EvaluationRequest(str(tmp_path / "checkpoint"), data, tmp_path / "eval", DELAYS,
                          progress=False)
    )  # fmt: skip
    assert rescored["miou"]["dedelayed"] == [max(row) for row in grid]


def test_a_calibrated_horizon_is_lengthened_keeping_the_younger_ages(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    data, checkpoint = setup
    request = CalibrationRequest(
        str(checkpoint), data, tmp_path / "short", max_delay=2, weights=[0.0, 1.0, 3.0],
        every=2, confidence=0.0, progress=False,
    )  # fmt: skip
    short = calibrate(request)
    longer = calibrate(
        replace(
            request, checkpoint=str(tmp_path / "short" / "checkpoint"), out=tmp_path / "long",
            max_delay=4, from_age=2,
        )
    )  # fmt: skip
    assert longer["delays"] == [2.0, 3.0, 4.0] and longer["horizon_ticks"] == 4
    assert longer["chosen"][:2] == short["chosen"][:2] == longer["kept_from_checkpoint"]
    assert len(longer["chosen"]) == 5
    assert load_checkpoint(tmp_path / "long" / "checkpoint")[0].config.horizon_ticks == 4
    with pytest.raises(CalibrationError, match="records for 3 ages"):
        calibrate(replace(request, checkpoint=str(tmp_path / "short" / "checkpoint"), from_age=4,
                          max_delay=5))  # fmt: skip


def test_calibration_keeps_a_lead_over_local_only_only_when_it_is_reliable(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """With `confidence`, an age's best candidate is kept only where it beat local-only in
    that share of resamples of the clips; elsewhere the choice falls back to local-only."""
    data, checkpoint = setup
    request = CalibrationRequest(
        str(checkpoint), data, tmp_path, max_delay=3, weights=[0.5, 1.0, 3.0], every=1,
        confidence=0.0, progress=False,
    )  # fmt: skip
    best = calibrate(request)
    sure = calibrate(replace(request, confidence=1.0, out=tmp_path / "sure"))
    assert sure["candidates"][0] == {"weight": 0.0, "blur": 1, "warped_weight": 0.0}
    for age, choice in enumerate(sure["choices"]):
        assert choice["best"] == best["chosen"][age]
        reliable = choice["best_gain_over_local_only"]["above_zero"] == 1.0
        expected = (
            choice["best"] if reliable or choice["best"]["weight"] == 0 else sure["candidates"][0]
        )
        assert sure["chosen"][age] == expected
        assert choice["fell_back_to_local_only"] == (sure["chosen"][age] != choice["best"])


def test_calibration_refuses_the_training_clips(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = setup
    trained_on = {"data": {"meta": open_clips(data).meta.to_json([])}}
    save_checkpoint(build("tiny"), tmp_path / "ckpt", trained_on)
    with pytest.raises(CalibrationError, match="shares 2 clips"):
        calibrate(CalibrationRequest(str(tmp_path / "ckpt"), data, tmp_path, max_delay=1))


@pytest.mark.slow
def test_live_run_scores_the_edge_outputs(
    setup: tuple[Path, Path], learned_tiny: Path, tmp_path: Path
) -> None:
    data, _ = setup
    result = evaluate_live(
        LiveRequest(str(learned_tiny), data, tmp_path, rtt_ms=100.0, max_delay=3.0, progress=False)
    )
    assert result["frames_scored"] == 2 * (14 - 6)
    assert 0.0 < result["combined_fraction"] <= 1.0
    assert result["d_o_median"] >= 3
    assert result["downlink_bytes_per_frame"] > 0 and result["uplink_bytes_per_frame"] > 0
    # The replay makes the same decisions through the same downlink codec: the same pixels up
    # to float noise between the server's and this process's thread counts.
    assert result["replay_pixel_agreement"] > 0.995
    assert abs(result["live_miou"] - result["offline_replay_miou"]) < 0.1
    saved = json.loads((tmp_path / "live.json").read_text())
    assert saved["clips"] == 2
    # The live gain is over local-only on the same frames; its interval brackets it.
    live_gain = saved["live_gain_over_local_only"]
    expected = result["live_miou"] - result["offline_local_only_miou"]
    assert abs(live_gain["gain"] - expected) <= 0.02
    assert live_gain["low"] <= live_gain["gain"] <= live_gain["high"]
    # Offline at the measured age (the tiny model's fps is the data's: frames are ticks), on
    # the frames the live run scored (all of them when that age is within its largest delay).
    offline = saved["offline_gain_at_measured_age"]
    assert offline["age_ticks"] == round(result["d_o_median"])
    assert offline["low"] <= offline["gain"] <= offline["high"]
    assert 0 < offline["frames_scored"] <= result["frames_scored"]
    if offline["age_ticks"] <= 3:
        assert offline["frames_scored"] == result["frames_scored"]
    line = gain_line(saved)
    assert f"live {live_gain['gain']:+.2f}" in line
    assert f"at the measured age {offline['age_ticks']} ticks" in line
    no_answer = saved | {"d_o_median": None, "offline_gain_at_measured_age": None}
    assert "no answer was used" in gain_line(no_answer)
    too_old = saved | {"offline_gain_at_measured_age": None}
    assert "far enough into its clip" in gain_line(too_old)


@pytest.mark.slow
def test_sweep_writes_a_table_and_a_plot(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, checkpoint = setup
    live = LiveRequest(str(checkpoint), data, tmp_path, max_delay=3.0, progress=False)
    rows = run_sweep(SweepRequest([0.0, 100.0], live))
    assert [row["rtt_ms"] for row in rows] == [0.0, 100.0]
    assert rows[1]["answer_age_ms_p50"] > rows[0]["answer_age_ms_p50"] + 50
    assert all(0 <= row["dedelayed"] <= 100 and row["downlink_kbps"] > 0 for row in rows)
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 3
