"""What the downlink carries and how the edge uses it, for both modes a configuration can have.

- Feature fusion (the paper's): the server sends the remote's downlink features; the edge adds
  them, scaled by the gain for their age (`downlink_gain`), inside its local model.
- Late average (`params.late_average`): the server sends the remote's delay-conditioned class
  probabilities (softmax of its predictive logits, on its stride-8 grid) with the
  `probs-u4-zstd` codec; the edge runs local-only and outputs
  (1 - w) * its own probabilities + w * the remote's, w chosen per age of the answer on
  held-out clips (`splitcast calibrate --late-average`). Measured on the default's networks
  (benchmarks/bench_late_ensemble.py), this beats fusing the features at every delay: the
  local model trained to fuse learns to lean on its own frame, and averaging keeps both
  opinions. Same networks, same delay conditioning; only the last step differs.

Every place that produces or consumes the downlink (server, edge, offline evaluation and
replay, calibration) goes through these functions, so they agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from splitcast.models.codec_names import PROBABILITY_CODEC
from splitcast.models.layers import resize
from splitcast.models.local import Features
from splitcast.models.registry import ModelConfig, SplitSystem, downlink_gain, per_age
from splitcast.models.remote import ENCODING_STRIDE


def is_late_average(config: ModelConfig) -> bool:
    """Whether the edge averages class probabilities instead of fusing features."""
    return bool(config.params.get("late_average", False))


def check_late_weights(weights: Sequence[float]) -> None:
    """Raise ValueError unless `weights` is a non-empty list of values in [0, 1]."""
    if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
        raise ValueError(f"late-average weights must be a non-empty list in [0, 1]: {weights}")


def with_late_average(config: ModelConfig, weights: Sequence[float]) -> ModelConfig:
    """`config` in late-average mode with weight `weights[age]` on the remote's probabilities."""
    check_late_weights(weights)
    params = {**config.params, "late_average": True, "late_weight": [float(w) for w in weights]}
    return replace(config, codec=PROBABILITY_CODEC, params=params)


def without_late_average(config: ModelConfig) -> ModelConfig:
    """`config` fusing features again, with its learned codec when it has a bottleneck (e.g. to
    compare both modes on the same networks)."""
    params = {k: v for k, v in config.params.items() if k not in ("late_average", "late_weight")}
    codec = "learned" if "bottleneck" in params else ModelConfig.codec
    return replace(config, codec=codec, params=params)


def check_codec(config: ModelConfig, codec: str) -> None:
    """Raise ValueError when `codec` cannot carry this configuration's downlink: the
    probability codec clips features to [0, 1], the learned one only codes features."""
    if is_late_average(config) and codec == "learned":
        raise ValueError("the learned codec codes features; this model sends class probabilities")
    if not is_late_average(config) and codec == PROBABILITY_CODEC:
        raise ValueError(f"{codec} carries class probabilities; this model sends features")


def downlink_weight(config: ModelConfig, age_ticks: float) -> float:
    """How much the edge uses an answer `age_ticks` old: the averaging weight in late-average
    mode, the feature gain otherwise."""
    if is_late_average(config):
        return per_age(config.params["late_weight"], age_ticks)
    return downlink_gain(config, age_ticks)


def downlink_shape(system: SplitSystem) -> tuple[int, int, int]:
    """Shape [C, H, W] of one frame's downlink (before the codec)."""
    config = system.config
    if is_late_average(config):
        height, width = config.remote_size
        return (config.num_classes, height // ENCODING_STRIDE, width // ENCODING_STRIDE)
    return system.local.downlink_shape(config.local_size)


def remote_downlink(
    system: SplitSystem, context: torch.Tensor, delay: torch.Tensor, local_size: tuple[int, int]
) -> torch.Tensor:
    """What the server sends (before the codec) for stacked encodings [B, C, K, h, w] told
    `delay` [B], to a local model at `local_size`."""
    if is_late_average(system.config):
        return system.remote.predict(context, delay, local_size)[1].softmax(1)
    return system.remote.predict_downlink(context, delay, local_size)


def remote_outputs(
    system: SplitSystem, context: torch.Tensor, delay: torch.Tensor, local_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(`remote_downlink`, the predictive logits) from one pass of the heads."""
    features, logits = system.remote.predict(context, delay, local_size)
    return (logits.softmax(1) if is_late_average(system.config) else features), logits


def average(local_logits: torch.Tensor, remote_probs: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 - weight) * softmax(local_logits) + weight * remote_probs resized to the local
    output: class probabilities [B, classes, H, W]. In place on the softmax (`lerp_`): each
    fresh full-size tensor costs the edge about a millisecond, half the step's extra time."""
    remote = resize(remote_probs, tuple(local_logits.shape[-2:]))
    return local_logits.softmax(1).lerp_(remote, weight)


def edge_scores(
    system: SplitSystem,
    features: Features,
    local_logits: torch.Tensor,
    received: torch.Tensor,
    weight: float,
    size: tuple[int, int],
) -> torch.Tensor:
    """The edge's class scores [B, classes, *size] for local input `size` with a received
    downlink (after the codec), from the local encoder's `features` and the local-only logits
    they give."""
    if is_late_average(system.config):
        return average(local_logits, received, weight)
    return system.local.decode(features, received * weight, size)
