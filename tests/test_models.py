"""Model interfaces and configurations: streaming equals batch, fusion off equals local-only,
real pretrained weights, the paper's sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as photos

from splitcast.models.answers import AnswerUse
from splitcast.models.backbones import efficientnet_lite_classifier
from splitcast.models.checkpoint import CheckpointError, migrate_config
from splitcast.models.config import (
    BottleneckSettings,
    LiteSettings,
    ModelConfig,
    TinySettings,
    TrainedParts,
)
from splitcast.models.layers import FrameWiseConv3d, class_ids, resize
from splitcast.models.local import HEAD_STRIDE
from splitcast.models.registry import (
    SplitSystem,
    available,
    build,
    count_parameters,
    get_config,
    load_config,
)
from splitcast.models.remote import HEADS, ForecastWarp
from splitcast.models.remote_stream import RemoteStream, padded

IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_CUPS = {504, 967, 968}  # coffee mug, espresso, cup


def test_registry_lists_the_three_configurations_and_tiny_is_deterministic() -> None:
    assert {"tiny", "lite", "paper"} <= set(available())
    first, second = build("tiny"), build("tiny")
    for a, b in zip(
        first.local.state_dict().values(), second.local.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "warp"), [("tiny", False), ("tiny", True), ("lite", False)])
def test_stream_step_matches_batch_forward_after_warm_up(name: str, warp: bool) -> None:
    system = build(get_config(name).with_network(forecast_warp=True) if warp else name)
    config = system.config
    generator = torch.Generator().manual_seed(1)
    frames = torch.rand(1, 3, config.context_frames + 2, *config.remote_size, generator=generator)
    delay = torch.tensor([2.5])
    stream = RemoteStream(config.context_frames)
    with torch.inference_mode():
        for index in range(frames.shape[2]):
            used, window = stream.push(index, system.remote.encode(frames[:, :, index]))
            streamed = system.remote.outputs(window, delay, config.local_size)
            downlink = system.remote.outputs(window, delay, config.local_size, ("downlink",))
        batch = system.remote(frames[:, :, -config.context_frames :], delay, config.local_size)
    assert used == list(range(2, frames.shape[2]))
    for name in HEADS:
        assert (streamed[name] - batch[name]).abs().max().item() <= 1e-4
    assert list(downlink) == ["downlink"], "only the heads asked for run"
    assert torch.equal(downlink["downlink"], streamed["downlink"])


def test_a_stream_pads_its_start_with_the_oldest_frame() -> None:
    assert padded([7], 4) == [7, 7, 7, 7]
    assert padded([3, 5], 4) == [3, 3, 3, 5]
    assert padded([1, 2, 3, 4, 5], 4) == [2, 3, 4, 5]
    stream = RemoteStream(3)
    encodings = [torch.full((1, 2, 1, 1), float(i)) for i in range(4)]
    used, window = stream.push(10, encodings[0])
    assert used == [10, 10, 10] and window.shape == (1, 2, 3, 1, 1)
    for sequence, encoding in zip((11, 12, 13), encodings[1:], strict=True):
        used, window = stream.push(sequence, encoding)
    assert used == [11, 12, 13] and window[0, 0, :, 0, 0].tolist() == [1.0, 2.0, 3.0]


def test_forecast_warp_starts_as_the_identity_and_is_still_at_delay_zero() -> None:
    plain = build("tiny")
    warped = build(plain.config.with_network(forecast_warp=True))
    warped.local.load_state_dict(plain.local.state_dict())
    warped.remote.load_state_dict(plain.remote.state_dict(), strict=False)
    config = plain.config
    frames = torch.rand(2, 3, config.context_frames, *config.remote_size)
    delays = torch.tensor([0.0, 4.0])
    with torch.inference_mode():
        before = plain.remote(frames, delays, config.local_size)
        after = warped.remote(frames, delays, config.local_size)
        assert all(torch.allclose(before[n], after[n], atol=1e-5) for n in HEADS)
        warped.remote.warp.motion.bias.fill_(0.05)
        moved = warped.remote(frames, delays, config.local_size)
    for name in HEADS:
        assert torch.allclose(before[name][0], moved[name][0], atol=1e-5)
        assert not torch.allclose(before[name][1], moved[name][1], atol=1e-3)


def test_forecast_warp_moves_features_by_motion_times_delay() -> None:
    warp = ForecastWarp(channels=3, hidden=8).eval()
    features = torch.rand(1, 3, 8, 16)
    cell = 2 / features.shape[-1]
    with torch.inference_mode():
        warp.motion.bias.copy_(torch.tensor([cell / 2, 0.0]))
        two_ticks = warp(features, torch.tensor([2.0]))
        warp.motion.bias.copy_(torch.tensor([cell, 0.0]))
        one_tick = warp(features, torch.tensor([1.0]))
    assert torch.allclose(two_ticks[..., :-1], features[..., 1:], atol=1e-5)
    assert torch.allclose(one_tick, two_ticks, atol=1e-6)


def build_fused_at(name: str, fusion_stride: int) -> SplitSystem:
    config = get_config(name)
    return build(config.with_network(fusion_stride=fusion_stride))


@pytest.mark.parametrize(("name", "fusion_stride"), [("tiny", 8), ("tiny", 4), ("lite", 8)])
def test_none_and_zero_downlink_give_exactly_the_local_only_output(
    name: str, fusion_stride: int
) -> None:
    system = build_fused_at(name, fusion_stride)
    config = system.config
    frame = torch.rand(1, 3, *config.local_size)
    zeros = torch.zeros(1, *system.local.downlink_shape(config.local_size))
    with torch.inference_mode():
        local_only = system.local(frame, None)
        with_zeros = system.local(frame, zeros)
        with_features = system.local(frame, torch.randn_like(zeros))
    assert torch.equal(local_only, with_zeros)
    grid = tuple(side // HEAD_STRIDE for side in config.local_size)
    assert local_only.shape == (1, config.num_classes, *grid)
    assert not torch.equal(local_only, with_features)


@pytest.mark.parametrize("fusion_stride", [8, 4])
def test_delay_changes_the_features_and_shapes_fit_the_fusion_point(fusion_stride: int) -> None:
    system = build_fused_at("tiny", fusion_stride)
    config = system.config
    frames = torch.rand(2, 3, config.context_frames, *config.remote_size)
    with torch.inference_mode():
        outputs = system.remote(frames, torch.tensor([0.0, 0.0]), config.local_size)
        early, logits = outputs["downlink"], outputs["logits"]
        late = system.remote(frames, torch.tensor([5.0, 5.0]), config.local_size)["downlink"]
        image_only = system.remote.image_only(frames[:, :, -1])
    assert not torch.allclose(early, late)
    height, width = config.local_size
    assert tuple(early.shape[2:]) == (height // fusion_stride, width // fusion_stride)
    assert tuple(early.shape[1:]) == system.local.downlink_shape(config.local_size)
    assert logits.shape[1] == config.num_classes and image_only.shape == logits.shape


def test_an_unsupported_fusion_stride_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="fusion_stride"):
        build_fused_at("tiny", 16)


def test_lite_keeps_the_local_input_at_most_two_thirds_of_the_remote_height() -> None:
    config = get_config("lite")
    assert config.local_size[0] <= 2 / 3 * config.remote_size[0]


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_packaged_efficientnet_lite_weights_classify_real_photos(variant: str) -> None:
    model = efficientnet_lite_classifier(variant)
    for photo, expected in ((photos.chelsea(), IMAGENET_CATS), (photos.coffee(), IMAGENET_CUPS)):
        image = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float()[None]
        image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
        with torch.inference_mode():
            top5 = set(model((image - 127.0) / 128.0).topk(5).indices[0].tolist())
        assert top5 & expected, f"{variant}: top-5 {sorted(top5)} misses {sorted(expected)}"


def test_lite_backbones_carry_the_packaged_weights() -> None:
    system = build("lite")
    classifier = efficientnet_lite_classifier("lite0")
    stem = system.local.stages.stem4[0].weight
    assert torch.equal(stem, classifier.conv_stem.weight)


@pytest.mark.parametrize("name", ["tiny", "lite", "paper"])
def test_remote_upper_stages_recompute_the_backbone_outputs_from_stride_8_or_16(name: str) -> None:
    backbone = build(name, pretrained=False).remote.backbone
    with torch.inference_mode():
        f8, f16, f32 = backbone(torch.rand(1, 3, 128, 256))
        assert torch.allclose(backbone.stage_after(16)(f16), f32)
        for stride in (8, 16):
            recomputed = backbone.recompute_from(stride, [f8, f16, f32])
            expected = (f8, f16, f32)
            assert all(
                torch.allclose(a, b, atol=1e-5) for a, b in zip(recomputed, expected, strict=True)
            )
    names = {n for n, _ in backbone.named_parameters()}
    assert not any(n.startswith("top") for n in names)


def test_paper_configuration_sizes_and_a_training_step_at_reduced_size() -> None:
    system = build("paper")
    local = count_parameters(system.local)
    temporal = count_parameters(system.remote.temporal)
    delay = count_parameters(system.remote.delay_embedding)
    print(
        f"paper: local {local / 1e6:.2f} M, ViT3D {temporal / 1e6:.2f} M, "
        f"delay MLP {delay / 1e6:.3f} M"
    )
    assert abs(local - 8.1e6) <= 0.1 * 8.1e6
    assert abs(temporal - 9.8e6) <= 0.1 * 9.8e6
    assert abs(delay - 0.27e6) <= 0.1 * 0.27e6
    system.remote.train()
    system.local.train()
    frames = torch.rand(1, 3, 4, 128, 256)
    outputs = system.remote(frames, torch.tensor([3.0]), (96, 192))
    downlink, logits = outputs["downlink"], outputs["logits"]
    fused = system.local(torch.rand(1, 3, 96, 192), downlink)
    loss = fused.mean() + logits.mean()
    loss.backward()
    assert system.remote.temporal.attention[0].qkv.weight.grad is not None
    assert next(system.local.stages.stem4.parameters()).grad is not None


@pytest.mark.parametrize("batch", [1, 3])
def test_frame_wise_3d_convolution_equals_conv3d(batch: int) -> None:
    generator = torch.Generator().manual_seed(2)
    frame_wise = FrameWiseConv3d(16, 8, 3, bias=True)
    reference = torch.nn.Conv3d(16, 8, 3, padding=1)
    reference.load_state_dict(frame_wise.state_dict())
    clips = torch.rand(batch, 16, 4, 10, 12, generator=generator)
    with torch.inference_mode():
        assert (frame_wise(clips) - reference(clips)).abs().max().item() <= 1e-5


def test_class_ids_equal_resize_then_argmax() -> None:
    logits = torch.rand(2, 19, 16, 32, generator=torch.Generator().manual_seed(3))
    assert torch.equal(class_ids(logits, (64, 128)), resize(logits, (64, 128)).argmax(1))


def test_a_checkpoint_config_from_before_typed_parts_migrates_to_them() -> None:
    untyped = {
        "name": "lite", "architecture": "lite", "codec": "logprobs-u4-zstd", "version": "v1",
        "params": {
            "freeze_remote_backbone": True, "fusion_stride": 4, "train_remote_top": True,
            "forecast_warp": True, "bottleneck": {"width": 16, "stride": 2},
            "downlink_gain": [0.75, 0.5], "late_average": True, "late_weight": [0.6, 0.4],
            "late_blur": [11, 9], "late_warped_weight": [0.6, 0.0],
        },
    }  # fmt: skip
    config = ModelConfig.from_dict(migrate_config(untyped))
    assert config.combiner == "late_average" and config.version == "v1"
    assert config.policy == {
        "feature_fusion": (AnswerUse(0.75), AnswerUse(0.5)),
        "late_average": (AnswerUse(0.6, 11, 0.6), AnswerUse(0.4, 9, 0.0)),
    }
    assert config.network == LiteSettings(fusion_stride=4, forecast_warp=True)
    assert config.bottleneck == BottleneckSettings(16, 2)
    assert config.trained == TrainedParts(freeze_remote_backbone=True, remote_trained_from=16)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert migrate_config(config.to_dict()) == config.to_dict()


def test_settings_an_architecture_does_not_have_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny setting: widht"):
        ModelConfig.from_dict({"name": "x", "architecture": "tiny", "network": {"widht": 8}})
    with pytest.raises(ValueError, match="unknown model field: params"):
        ModelConfig.from_dict({"name": "x", "architecture": "tiny", "params": {}})
    derived = tmp_path / "wide.yaml"
    derived.write_text("base: tiny\nname: tiny-wide\nnetwork:\n  width: 48\n")
    config = load_config(derived)
    assert config.network == TinySettings(width=48) and build(config).remote.neck.out is not None


def test_migration_pads_short_per_age_lists_and_refuses_removed_experiments() -> None:
    base = {"name": "tiny", "architecture": "tiny", "codec": "logprobs-u4-zstd"}
    short = {
        **base,
        "params": {"late_average": True, "late_weight": [0.6, 0.5, 0.4], "late_blur": [5]},
    }
    config = ModelConfig.from_dict(migrate_config(short))
    assert [u.blur for u in config.policy["late_average"]] == [5, 5, 5]
    aligned = {**base, "params": {"downlink_align": True, "align_hidden": 64}}
    with pytest.raises(CheckpointError, match="downlink_align"):
        migrate_config(aligned)
    assert "network" in migrate_config({**base, "params": {"max_context_gap": 1}})
    with pytest.raises(ValueError, match="unknown uplink_format 'jpg'"):
        ModelConfig.from_dict({"name": "x", "architecture": "tiny", "uplink_format": "jpg"})
    with pytest.raises(ValueError, match="unknown codec"):
        ModelConfig.from_dict({"name": "x", "architecture": "tiny", "codec": "gzip"})
