"""The late average end to end: its arithmetic, its codec, the edge runtime against the offline
scores, calibration of its weights, and a real server sending class probabilities."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from splitcast.calibrate import CalibrationError, CalibrationRequest, calibrate
from splitcast.data.build import build_split
from splitcast.data.scene.generator import SceneSettings
from splitcast.edge.runtime import LocalRuntime
from splitcast.evaluate import EvaluationRequest, evaluate_offline
from splitcast.models.checkpoint import load_checkpoint, save_checkpoint
from splitcast.models.codec import CodecError, get_codec
from splitcast.models.downlink import (
    average,
    check_codec,
    downlink_shape,
    downlink_weight,
    edge_scores,
    is_late_average,
    with_late_average,
    without_late_average,
)
from splitcast.models.layers import class_ids, resize
from splitcast.models.registry import build

if TYPE_CHECKING:
    from conftest import EdgeRun


def test_average_is_local_at_zero_and_remote_at_one() -> None:
    local = torch.randn(2, 5, 8, 16)
    remote = torch.rand(2, 5, 4, 8).softmax(1)
    assert torch.allclose(average(local, remote, 0.0), local.softmax(1))
    assert torch.allclose(average(local, remote, 1.0), resize(remote, (8, 16)))
    mixed = average(local, remote, 0.3)
    assert torch.allclose(mixed.sum(1), torch.ones(2, 8, 16), atol=1e-5)


def test_probability_codec_round_trip_and_corruption() -> None:
    codec = get_codec("probs-u4-zstd")
    probs = torch.randn(19, 32, 64).mul(4).softmax(0).numpy()
    encoded = codec.encode(probs)
    decoded = codec.decode(encoded)
    assert decoded.shape == probs.shape and np.abs(decoded - probs).max() <= 0.5 / 15 + 1e-6
    assert len(encoded.payload) < probs.size  # under one byte per value
    with pytest.raises(CodecError, match="does not decompress"):
        codec.decode(dataclasses.replace(encoded, payload=encoded.payload[:-4]))
    big = get_codec("probs-u4-zstd").encode(np.full((2, 2, 2), 1.0, dtype=np.float32))
    wrong_shape = dataclasses.replace(big, shape=(2, 2, 3))
    with pytest.raises(CodecError, match="needs 12"):
        codec.decode(wrong_shape)


def test_modes_refuse_the_other_modes_codec() -> None:
    fusion = build("tiny").config
    late = with_late_average(fusion, [0.5, 0.25])
    assert is_late_average(late) and late.codec == "probs-u4-zstd"
    assert [downlink_weight(late, age) for age in (0, 1, 7)] == [0.5, 0.25, 0.25]
    assert without_late_average(late) == fusion
    with pytest.raises(ValueError, match="sends features"):
        check_codec(fusion, "probs-u4-zstd")
    with pytest.raises(ValueError, match="sends class probabilities"):
        check_codec(late, "learned")
    with pytest.raises(ValueError, match="late-average weights"):
        with_late_average(fusion, [1.5])


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_edge_runtime_outputs_the_offline_late_average(runtime: str) -> None:
    system = build("tiny")
    system.config = with_late_average(system.config, [0.4])
    config = system.config
    rgb = np.random.default_rng(0).integers(0, 256, (*config.local_size, 3), dtype=np.uint8)
    received = torch.rand(1, *downlink_shape(system)).softmax(1)
    edge = LocalRuntime(system.local, config.local_size, runtime=runtime, late_average=True)
    frame = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).unsqueeze(0)
    with torch.inference_mode():
        features = system.local.encode(frame)
        local = system.local.decode(features, None, config.local_size)
        scores = edge_scores(system, features, local, received, 0.4, config.local_size)
    offline = class_ids(scores, (100, 200))[0].numpy()
    on_edge = edge.segment(rgb, received, output_size=(100, 200), weight=0.4)
    assert (on_edge == offline).mean() > 0.999
    assert (edge.segment(rgb, None) == class_ids(local, config.local_size)[0].numpy()).all()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("late")
    build_split(
        root / "calib", "calib", clips=2, frames=14, settings=SceneSettings(height=96),
        progress=False,
    )  # fmt: skip
    save_checkpoint(build("tiny"), root / "ckpt", {"note": "untrained tiny"}, half=False)
    return root / "calib", root / "ckpt"


def test_calibration_switches_to_the_late_average_and_evaluate_applies_it(
    clips: tuple[Path, Path], tmp_path: Path
) -> None:
    data, checkpoint = clips
    weights = [0.0, 0.5, 1.0]
    result = calibrate(
        CalibrationRequest(
            str(checkpoint), data, tmp_path / "calib", max_delay=2, gains=weights, every=1,
            progress=False, late_average=True,
        )
    )  # fmt: skip
    grid = result["gain_grid"]
    assert result["mode"] == "late-average" and len(grid) == 3
    assert result["chosen_gains"] == [weights[row.index(max(row))] for row in grid]
    calibrated, _ = load_checkpoint(tmp_path / "calib" / "checkpoint")
    assert is_late_average(calibrated.config) and calibrated.config.codec == "probs-u4-zstd"
    assert calibrated.config.params["late_weight"] == result["chosen_gains"]
    rescored = evaluate_offline(
        EvaluationRequest(
            str(tmp_path / "calib" / "checkpoint"), data, tmp_path / "eval", [0.0, 1.0, 2.0],
            progress=False,
        )
    )  # fmt: skip
    assert rescored["miou"]["dedelayed"] == [max(row) for row in grid]
    assert 0 < rescored["downlink_bytes_per_frame"]["mean"] < np.prod(downlink_shape(calibrated))
    with pytest.raises(CalibrationError, match="--late-average"):
        calibrate(CalibrationRequest(str(tmp_path / "calib" / "checkpoint"), data, tmp_path))


def test_edge_averages_probabilities_from_a_real_server(
    tmp_path: Path, edge_against_own_server: EdgeRun
) -> None:
    system = build("tiny")
    system.config = with_late_average(system.config, [0.5])
    folder = tmp_path / "tiny-late"
    save_checkpoint(system, folder, {}, half=False)
    summary, records = edge_against_own_server(folder, tmp_path / "edge.jsonl")
    link = summary.link
    assert link["codec"] == "probs-u4-zstd" and link["decode_errors"] == 0
    assert summary.fused_fraction > 0.5
    assert sum(r["fused"] for r in records) == summary.fused
