"""The late average end to end: its arithmetic, its codec, the edge runtime against the offline
scores, calibration of its weights, and a real server sending class log-probabilities."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splitcast.calibrate import CalibrationRequest, calibrate, plotted_lines
from splitcast.data.build import build_split
from splitcast.data.scene.generator import SceneSettings
from splitcast.edge.client import PANELS, EdgeClient
from splitcast.edge.runtime import LocalRuntime
from splitcast.edge.sources import MovingSceneSource
from splitcast.evaluate import EvaluationRequest, evaluate_offline
from splitcast.models.answers import AnswerUse
from splitcast.models.checkpoint import load_checkpoint, save_checkpoint
from splitcast.models.codec import CodecError, get_codec
from splitcast.models.codec_names import LOG_PROBABILITY_FLOOR
from splitcast.models.combiners import FeatureFusion, LateAverage, pool, warp_to_now
from splitcast.models.edge_step import EdgeStep, TorchLocal
from splitcast.models.layers import class_ids, resize
from splitcast.models.motion import FrameHistory, MotionEstimator, grey
from splitcast.models.registry import SplitSystem, build

if TYPE_CHECKING:
    from conftest import EdgeRun


def test_average_is_log_linear_pooling_up_to_a_per_pixel_constant() -> None:
    local = torch.randn(2, 5, 8, 16)
    forecast = torch.randn(2, 5, 4, 8).log_softmax(1)
    on_time = torch.randn(2, 5, 4, 8).log_softmax(1)
    flows = torch.randn(2, 8, 16, 2)
    assert torch.allclose(pool(local, forecast, on_time, AnswerUse(0.0, 7), flows), local)
    for use in (AnswerUse(1.0, 1), AnswerUse(0.6, 3), AnswerUse(0.4, 3, 0.3)):
        scores = pool(local, forecast, on_time, use, flows)
        blurred = F.avg_pool2d(forecast.exp(), use.blur, 1, use.blur // 2, count_include_pad=False)
        remote = use.weight * blurred.log() + use.warped_weight * warp_to_now(on_time, flows)
        pooled = local.log_softmax(1) + resize(remote, (8, 16))
        offset = scores - pooled  # the local log-sum-exp, the same for every class
        assert torch.allclose(offset, local.logsumexp(1, keepdim=True).expand_as(offset), atol=1e-5)
        assert torch.equal(scores.argmax(1), pooled.argmax(1))
    untouched = local.clone(), forecast.clone(), on_time.clone()
    pool(local, forecast, on_time, AnswerUse(0.5, 3, 0.5), flows)
    assert torch.equal(local, untouched[0])  # the caller's logits are reused for other delays
    assert torch.equal(forecast, untouched[1]) and torch.equal(on_time, untouched[2])


def test_average_blurs_the_forecast_probabilities_over_the_box() -> None:
    probs = torch.full((1, 2, 5, 5), 0.1)
    probs[0, 1] = 0.9
    probs[0, :, 2, 2] = torch.tensor([0.9, 0.1])  # one cell sure of class 0
    uniform = torch.zeros(1, 2, 5, 5)
    on_time = torch.zeros_like(probs)
    pooled = pool(uniform, probs.log(), on_time, AnswerUse(1.0, 3)).exp()
    assert torch.allclose(pooled[0, 0, 2, 3], torch.tensor((0.9 + 8 * 0.1) / 9))
    assert torch.allclose(pooled[0, 0, 0, 0], torch.tensor(0.1))  # out of the cell's reach
    assert torch.allclose(pooled[0, 0, 1, 1], torch.tensor((0.9 + 8 * 0.1) / 9))
    unblurred = pool(uniform, probs.log(), on_time, AnswerUse(1.0, 1)).exp()
    assert torch.allclose(unblurred, probs)


def _textured_frame(shift: int) -> np.ndarray:
    """A smooth random texture (grey, 64 x 128) moved `shift` pixels to the right."""
    noise = np.random.default_rng(3).random((64, 160)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return np.ascontiguousarray(smooth[:, 16 - shift : 144 - shift].astype(np.uint8))


def test_measured_flow_moves_the_on_time_answer_with_the_scene() -> None:
    source, current = _textured_frame(0), _textured_frame(8)  # the scene moved 8 px right
    flow = MotionEstimator().backward_flow(current, source)
    inner = flow[8:-8, 16:-16]
    assert abs(float(np.median(inner[..., 0])) + 8) < 1 and abs(float(np.median(inner[..., 1]))) < 1
    still = MotionEstimator().backward_flow(source, source)
    assert float(np.abs(still).max()) < 0.5
    # on the answer's 4x-coarser grid, a class edge at cell 10 of the source frame is at 12 now
    answer = torch.zeros(1, 2, 16, 32)
    answer[0, 0, :, :10] = 1.0
    answer[0, 1, :, 10:] = 1.0
    moved = warp_to_now(
        answer, torch.full((1, 64, 128, 2), 0.0).index_fill_(3, torch.tensor([0]), -8.0)
    )
    assert torch.equal(moved.argmax(1)[0, :, :12], torch.zeros(16, 12, dtype=torch.long))
    assert torch.equal(moved.argmax(1)[0, :, 13:], torch.ones(16, 19, dtype=torch.long))
    assert torch.allclose(warp_to_now(answer, torch.zeros(1, 64, 128, 2)), answer)


def test_frame_history_keeps_the_newest_frames() -> None:
    history = FrameHistory(2)
    for sequence in range(4):
        history.add(sequence, np.full((2, 2), sequence, dtype=np.uint8))
    assert history.get(1) is None and int(history.get(3)[0, 0]) == 3
    with pytest.raises(ValueError, match="at least one"):
        FrameHistory(0)
    with pytest.raises(ValueError, match="differ in size"):
        MotionEstimator().backward_flow(np.zeros((4, 4), np.uint8), np.zeros((4, 6), np.uint8))


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


def _late(system: SplitSystem, uses: list[AnswerUse]) -> SplitSystem:
    """`system` answering with the late average, its per-age policy `uses`."""
    late = system.with_combiner(LateAverage.name)
    return dataclasses.replace(late, config=late.config.with_policy(LateAverage.name, uses))


def test_combiners_refuse_the_other_combiners_codec_and_read_their_policy_by_age() -> None:
    fusion = build("tiny")
    late = _late(fusion, [AnswerUse(0.5, 1), AnswerUse(0.25, 5, 0.3)])
    assert isinstance(late.combiner(), LateAverage) and late.config.codec == "logprobs-u4-zstd"
    assert [late.combiner().use_at(age) for age in (0, 1, 7)] == [
        AnswerUse(0.5, 1), AnswerUse(0.25, 5, 0.3), AnswerUse(0.25, 5, 0.3)
    ]  # fmt: skip
    assert isinstance(fusion.combiner(), FeatureFusion)
    assert fusion.combiner().use_at(3) == AnswerUse(1.0)  # no policy: as sent
    assert late.with_combiner(FeatureFusion.name).config.codec == "raw-fp16"
    assert [t.name for t in late.combiner().wire()] == ["forecast", "on_time"]
    assert [t.name for t in fusion.combiner().wire()] == ["features"]
    with pytest.raises(ValueError, match="sends features"):
        fusion.combiner("logprobs-u4-zstd")
    with pytest.raises(ValueError, match="sends class log-probabilities"):
        late.combiner("learned")
    with pytest.raises(ValueError, match="answer weights"):
        late.config.with_policy(LateAverage.name, [AnswerUse(4.5)])
    with pytest.raises(ValueError, match="answer weights"):
        late.config.with_policy(LateAverage.name, [AnswerUse(0.5, 1, -0.1)])
    with pytest.raises(ValueError, match="odd number"):
        late.config.with_policy(LateAverage.name, [AnswerUse(0.5, 4)])
    with pytest.raises(ValueError, match="no blur"):
        fusion.combiner().candidates([0.5], blurs=[3])


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_edge_runtime_outputs_the_offline_late_average(runtime: str) -> None:
    use = AnswerUse(0.4, 3, 0.3)
    system = _late(build("tiny"), [use])
    config = system.config
    height, width = config.local_size
    texture = np.random.default_rng(0).integers(0, 256, (height, width + 8, 3), dtype=np.uint8)
    source, rgb = texture[:, 8:], texture[:, :-8]  # the scene moved 8 px right since the answer
    combiner = system.combiner()
    answer = {t.name: torch.randn(1, *t.shape).mul(3).log_softmax(1) for t in combiner.wire()}
    edge = LocalRuntime(system, runtime=runtime)
    frame = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).unsqueeze(0)
    flows = torch.from_numpy(MotionEstimator().backward_flow(grey(rgb), grey(source)))[None]
    step = EdgeStep(combiner, TorchLocal(system.local), config.local_size)
    with torch.inference_mode():
        local = step.local(frame)
        scores = combiner.combine(local, answer, use, flows)
        unmoved = combiner.combine(local, answer, use, None)
    offline = step.ids(scores, (100, 200))[0].numpy()
    assert (step.ids(unmoved, (100, 200))[0].numpy() != offline).mean() > 0.01
    edge.segment(source, None, sequence=7)
    on_edge = edge.segment(rgb, answer, (100, 200), use, sequence=10, source_sequence=7)
    assert (on_edge == offline).mean() > 0.999
    local_ids = class_ids(local.local_only(), config.local_size)[0].numpy()
    assert (edge.segment(rgb, None) == local_ids).all()


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
        str(checkpoint), data, tmp_path / "calib", max_delay=2, combiner="late_average",
        weights=[0.5, 1.0], blurs=[1, 5], moved_weights=[0.0, 0.5], every=1, progress=False,
    )  # fmt: skip
    result = calibrate(request)
    candidates = [AnswerUse(**record) for record in result["candidates"]]
    assert len(candidates) == 9 and {c.blur for c in candidates} == {1, 5}
    assert candidates[0] == AnswerUse(0.0), "local-only is always a candidate, first"
    grid = result["gain_grid"]
    assert result["combiner"] == "late_average" and len(grid) == 3 and len(grid[0]) == 9
    assert all(row[0] == result["local_only"] for row in grid)
    chosen = [AnswerUse(**record) for record in result["chosen"]]
    for use, choice, row in zip(chosen, result["choices"], grid, strict=True):
        best = AnswerUse(**choice["best"])
        assert row[candidates.index(best)] == max(row)  # best unrounded: among best rounded
        assert use == best or (use == AnswerUse(0.0) and choice["fell_back_to_local_only"])
    lines = plotted_lines(candidates, grid)
    assert len(lines) == 2  # one per weight of the moved answer, the best of its candidates
    best = [max(row[i] for i, c in enumerate(candidates) if c.warped_weight == 0.5) for row in grid]
    assert lines["moved answer v 0.5, best w and k"] == best
    assert [max(column[i] for column in lines.values()) for i in range(3)] == [
        max(row) for row in grid
    ]
    calibrated, _ = load_checkpoint(tmp_path / "calib" / "checkpoint")
    assert calibrated.config.combiner == "late_average"
    assert calibrated.config.codec == "logprobs-u4-zstd"
    assert list(calibrated.config.policy["late_average"]) == chosen
    rescored = evaluate_offline(
        EvaluationRequest(
            str(tmp_path / "calib" / "checkpoint"), data, tmp_path / "eval", [0.0, 1.0, 2.0],
            progress=False,
        )
    )  # fmt: skip
    assert rescored["miou"]["dedelayed"] == [
        row[candidates.index(u)] for u, row in zip(chosen, grid, strict=True)
    ]
    wire = calibrated.combiner().wire()
    sent = sum(int(np.prod(t.shape)) for t in wire)
    assert 0 < rescored["downlink_bytes_per_frame"]["mean"] < sent
    with pytest.raises(ValueError, match="no blur"):
        calibrate(
            CalibrationRequest(
                str(checkpoint), data, tmp_path / "fusion", combiner="feature_fusion", blurs=[3]
            )
        )


def test_edge_averages_log_probabilities_from_a_real_server(
    tmp_path: Path, edge_against_own_server: EdgeRun
) -> None:
    system = _late(build("tiny"), [AnswerUse(0.5, 3, 0.3)])
    folder = tmp_path / "tiny-late"
    save_checkpoint(system, folder, {}, half=False)
    summary, records = edge_against_own_server(folder, tmp_path / "edge.jsonl")
    link = summary.link
    assert link["uplink"] == "jpeg q90" and link["decode_errors"] == 0
    assert summary.combined_fraction > 0.5
    assert sum(r["mode"] == "combined" for r in records) == summary.combined


def test_the_comparison_panels_before_any_answer() -> None:
    client = EdgeClient(_late(build("tiny"), [AnswerUse(0.5, 1, 0.2)]), panels=True)
    frame = next(iter(MovingSceneSource(num_frames=1).frames()))
    result = client.step(frame)
    assert set(result.panels) == set(PANELS)
    assert result.panels["remote forecast"] is None  # no answer has come
    assert result.panels["remote answer, used late"] is None
    np.testing.assert_array_equal(result.panels["local only"], result.class_ids)
