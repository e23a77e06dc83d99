"""Model interfaces of the `tiny` configuration."""

from __future__ import annotations

import torch

from splitcast.models.registry import available, build


def test_registry_lists_tiny_and_builds_identical_weights() -> None:
    assert "tiny" in available()
    first, second = build("tiny"), build("tiny")
    for a, b in zip(
        first.local.state_dict().values(), second.local.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_stream_step_matches_batch_forward_after_warm_up() -> None:
    system = build("tiny")
    config = system.config
    frames = torch.rand(
        1,
        3,
        config.context_frames + 2,
        *config.remote_size,
        generator=torch.Generator().manual_seed(1),
    )
    delay = torch.tensor([2.5])
    with torch.inference_mode():
        state = system.remote.stream_init()
        for index in range(frames.shape[2]):
            streamed = system.remote.stream_step(
                state, frames[:, :, index], delay, config.local_size
            )
        batch = system.remote(frames[:, :, -config.context_frames :], delay, config.local_size)
    for a, b in zip(streamed, batch, strict=True):
        assert (a - b).abs().max().item() <= 1e-4


def test_delay_changes_the_features() -> None:
    system = build("tiny")
    config = system.config
    frames = torch.rand(1, 3, config.context_frames, *config.remote_size)
    with torch.inference_mode():
        early, _ = system.remote(frames, torch.tensor([0.0]), config.local_size)
        late, _ = system.remote(frames, torch.tensor([5.0]), config.local_size)
    assert not torch.allclose(early, late)


def test_none_and_zero_downlink_give_the_local_only_output() -> None:
    system = build("tiny")
    config = system.config
    frame = torch.rand(1, 3, *config.local_size)
    zeros = torch.zeros(1, *system.local.downlink_shape(config.local_size))
    with torch.inference_mode():
        local_only = system.local(frame, None)
        with_zeros = system.local(frame, zeros)
        with_features = system.local(frame, torch.randn_like(zeros))
    assert torch.equal(local_only, with_zeros)
    assert local_only.shape == (1, config.num_classes, *config.local_size)
    assert not torch.equal(local_only, with_features)


def test_downlink_matches_the_local_fusion_shape() -> None:
    system = build("tiny")
    config = system.config
    frames = torch.rand(2, 3, config.context_frames, *config.remote_size)
    with torch.inference_mode():
        downlink, logits = system.remote(frames, torch.tensor([1.0, 3.0]), config.local_size)
        image_only = system.remote.image_only(frames[:, :, -1], config.local_size)
    assert tuple(downlink.shape[1:]) == system.local.downlink_shape(config.local_size)
    assert logits.shape[1] == config.num_classes
    assert image_only.shape == logits.shape
