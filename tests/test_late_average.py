"""The late average end to end: its arithmetic, its codec, the edge runtime against the offline
scores, calibration of its weights, and a real server sending class log-probabilities."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splitcast.calibrate import CalibrationError, CalibrationRequest, calibrate
from splitcast.data.build import build_split
from splitcast.data.scene.generator import SceneSettings
from splitcast.edge.runtime import LocalRuntime
from splitcast.evaluate import EvaluationRequest, evaluate_offline
from splitcast.models.checkpoint import load_checkpoint, save_checkpoint
from splitcast.models.codec import CodecError, get_codec
from splitcast.models.codec_names import LOG_PROBABILITY_FLOOR
from splitcast.models.downlink import (
    AnswerUse,
    average,
    check_codec,
    downlink_shape,
    downlink_use,
    edge_scores,
    is_late_average,
    with_late_average,
    without_late_average,
)
from splitcast.models.layers import class_ids, resize
from splitcast.models.registry import build

if TYPE_CHECKING:
    from conftest import EdgeRun


def test_average_is_log_linear_pooling_up_to_a_per_pixel_constant() -> None:
    local = torch.randn(2, 5, 8, 16)
    remote = torch.randn(2, 5, 4, 8).log_softmax(1)
    assert torch.allclose(average(local, remote, 0.0, 7), local)
    for weight, blur in ((1.0, 1), (0.6, 3)):
        scores = average(local, remote, weight, blur)
        pooled = local.log_softmax(1) + weight * resize(
            F.avg_pool2d(remote.exp(), blur, 1, blur // 2, count_include_pad=False).log(),
            (8, 16),
        )
        offset = scores - pooled  # the local log-sum-exp, the same for every class
        assert torch.allclose(offset, local.logsumexp(1, keepdim=True).expand_as(offset), atol=1e-5)
        assert torch.equal(scores.argmax(1), pooled.argmax(1))
    untouched = local.clone()
    average(local, remote, 0.5, 3)
    assert torch.equal(local, untouched)  # the caller's logits are reused for other delays


def test_average_blurs_the_remote_probabilities_over_the_box() -> None:
    probs = torch.full((1, 2, 5, 5), 0.1)
    probs[0, 1] = 0.9
    probs[0, :, 2, 2] = torch.tensor([0.9, 0.1])  # one cell sure of class 0
    uniform = torch.zeros(1, 2, 5, 5)
    pooled = average(uniform, probs.log(), 1.0, 3).exp()
    assert torch.allclose(pooled[0, 0, 2, 3], torch.tensor((0.9 + 8 * 0.1) / 9))
    assert torch.allclose(pooled[0, 0, 0, 0], torch.tensor(0.1))  # out of the cell's reach
    assert torch.allclose(pooled[0, 0, 1, 1], torch.tensor((0.9 + 8 * 0.1) / 9))
    unblurred = average(uniform, probs.log(), 1.0, 1).exp()
    assert torch.allclose(unblurred, probs)


def test_log_probability_codec_round_trip_and_corruption() -> None:
    codec = get_codec("logprobs-u4-zstd")
    log_probs = torch.randn(19, 32, 64).mul(4).log_softmax(0).numpy()
    encoded = codec.encode(log_probs)
    decoded = codec.decode(encoded)
    floored = np.maximum(log_probs, LOG_PROBABILITY_FLOOR)
    assert decoded.shape == log_probs.shape
    assert np.abs(decoded - floored).max() <= 0.5 * -LOG_PROBABILITY_FLOOR / 15 + 1e-5
    assert len(encoded.payload) < log_probs.size  # under one byte per value
    with pytest.raises(CodecError, match="does not decompress"):
        codec.decode(dataclasses.replace(encoded, payload=encoded.payload[:-4]))
    big = codec.encode(np.full((2, 2, 2), LOG_PROBABILITY_FLOOR, dtype=np.float32))
    wrong_shape = dataclasses.replace(big, shape=(2, 2, 3))
    with pytest.raises(CodecError, match="needs 12"):
        codec.decode(wrong_shape)


def test_modes_refuse_the_other_modes_codec() -> None:
    fusion = build("tiny").config
    late = with_late_average(fusion, [AnswerUse(0.5, 1), AnswerUse(0.25, 5)])
    assert is_late_average(late) and late.codec == "logprobs-u4-zstd"
    assert [downlink_use(late, age) for age in (0, 1, 7)] == [
        AnswerUse(0.5, 1), AnswerUse(0.25, 5), AnswerUse(0.25, 5)
    ]  # fmt: skip
    assert downlink_use(fusion, 3) == AnswerUse(1.0)
    assert without_late_average(late) == fusion
    with pytest.raises(ValueError, match="sends features"):
        check_codec(fusion, "logprobs-u4-zstd")
    with pytest.raises(ValueError, match="sends class log-probabilities"):
        check_codec(late, "learned")
    with pytest.raises(ValueError, match="late-average weights"):
        with_late_average(fusion, [AnswerUse(1.5)])
    with pytest.raises(ValueError, match="odd number"):
        with_late_average(fusion, [AnswerUse(0.5, 4)])


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_edge_runtime_outputs_the_offline_late_average(runtime: str) -> None:
    system = build("tiny")
    use = AnswerUse(0.4, 3)
    system.config = with_late_average(system.config, [use])
    config = system.config
    rgb = np.random.default_rng(0).integers(0, 256, (*config.local_size, 3), dtype=np.uint8)
    received = torch.randn(1, *downlink_shape(system)).mul(3).log_softmax(1)
    edge = LocalRuntime(system.local, config.local_size, runtime=runtime, late_average=True)
    frame = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).unsqueeze(0)
    with torch.inference_mode():
        features = system.local.encode(frame)
        local = system.local.decode(features, None, config.local_size)
        scores = edge_scores(system, features, local, received, use, config.local_size)
    offline = class_ids(scores, (100, 200))[0].numpy()
    on_edge = edge.segment(rgb, received, output_size=(100, 200), use=use)
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
    request = CalibrationRequest(
        str(checkpoint), data, tmp_path / "calib", max_delay=2, gains=[0.0, 0.5, 1.0], every=1,
        progress=False, late_average=True, late_blurs=[1, 5],
    )  # fmt: skip
    candidates = request.candidates()
    assert len(candidates) == 6 and {c.blur for c in candidates} == {1, 5}
    result = calibrate(request)
    grid = result["gain_grid"]
    assert result["mode"] == "late-average" and len(grid) == 3 and len(grid[0]) == 6
    chosen = [candidates[row.index(max(row))] for row in grid]
    assert result["chosen_gains"] == [c.weight for c in chosen]
    assert result["chosen_blurs"] == [c.blur for c in chosen]
    calibrated, _ = load_checkpoint(tmp_path / "calib" / "checkpoint")
    assert is_late_average(calibrated.config) and calibrated.config.codec == "logprobs-u4-zstd"
    assert calibrated.config.params["late_weight"] == result["chosen_gains"]
    assert calibrated.config.params["late_blur"] == result["chosen_blurs"]
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


def test_edge_averages_log_probabilities_from_a_real_server(
    tmp_path: Path, edge_against_own_server: EdgeRun
) -> None:
    system = build("tiny")
    system.config = with_late_average(system.config, [AnswerUse(0.5, 3)])
    folder = tmp_path / "tiny-late"
    save_checkpoint(system, folder, {}, half=False)
    summary, records = edge_against_own_server(folder, tmp_path / "edge.jsonl")
    link = summary.link
    assert link["codec"] == "logprobs-u4-zstd" and link["decode_errors"] == 0
    assert summary.fused_fraction > 0.5
    assert sum(r["fused"] for r in records) == summary.fused
