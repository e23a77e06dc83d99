"""What the downlink carries and how the edge uses it, for both modes a configuration can have.

- Feature fusion (the paper's): the server sends the remote's downlink features; the edge adds
  them, scaled by the gain for their age (`downlink_gain`), inside its local model.
- Late average (`params.late_average`): the server sends two maps of class log-probabilities
  (log-softmax of the remote's predictive logits, on its stride-8 grid) with the
  `logprobs-u4-zstd` codec: its forecast for the delay it was told, and its on-time answer
  for the newest frame it saw (delay 0). The edge runs local-only and outputs the weighted
  geometric average log p_local + w * log blur(p_forecast) + v * log moved(p_on_time): blur
  a k x k box average of the forecast's probabilities on its grid, moved the on-time answer
  warped to the current frame along the optical flow the edge measures between the two
  frames (`splitcast.models.motion`). w, k and v are chosen per age of the answer on
  held-out clips (`splitcast calibrate --late-average`; `params.late_weight`, `late_blur`,
  `late_warped_weight`). The blur says "this class is around here": a late forecast is right
  about what is in the scene more often than about exactly where. The warp supplies what only
  the edge knows: how the scene actually moved while the answer was in flight (the server can
  only forecast it). Measured on the default's networks and the calib clips
  (benchmarks/bench_late_ensemble.py), pooling beats fusing the features and the arithmetic
  average of probabilities at every delay, and the moved on-time answer adds to the forecast.
  Same networks, same delay conditioning; only the last step differs.

Every place that produces or consumes the downlink (server, edge, offline evaluation and
replay, calibration) goes through these functions, so they agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from splitcast.models.codec_names import LOG_PROBABILITY_FLOOR, PROBABILITY_CODEC
from splitcast.models.layers import resize
from splitcast.models.local import Features
from splitcast.models.motion import warp_to_now
from splitcast.models.registry import ModelConfig, SplitSystem, downlink_gain, per_age
from splitcast.models.remote import ENCODING_STRIDE


@dataclass(frozen=True)
class AnswerUse:
    """How the edge uses one answer: the feature gain or late-average weight of the forecast,
    and (late average only) the side of the box the forecast's probabilities are blurred over
    and the weight of the on-time answer moved to the current frame."""

    weight: float
    blur: int = 1
    warped_weight: float = 0.0


AS_SENT = AnswerUse(1.0)
"""The answer used as it arrives: gain 1 (or weight 1), no blur."""


def is_late_average(config: ModelConfig) -> bool:
    """Whether the edge averages class probabilities instead of fusing features."""
    return bool(config.params.get("late_average", False))


def check_late_uses(uses: Sequence[AnswerUse]) -> None:
    """Raise ValueError unless every weight is in [0, 1] and every blur an odd box side."""
    if not uses or any(not 0.0 <= w <= 1.0 for u in uses for w in (u.weight, u.warped_weight)):
        weights = [(u.weight, u.warped_weight) for u in uses]
        raise ValueError(f"late-average weights must be a non-empty list in [0, 1]: {weights}")
    wrong = sorted({u.blur for u in uses if u.blur < 1 or u.blur % 2 == 0})
    if wrong:
        raise ValueError(f"the late-average blur must be an odd number of cells, not {wrong}")


def with_late_average(config: ModelConfig, uses: Sequence[AnswerUse]) -> ModelConfig:
    """`config` in late-average mode using an answer `age` ticks old as `uses[age]` (the last
    for older ones)."""
    check_late_uses(uses)
    params = {
        **config.params,
        "late_average": True,
        "late_weight": [float(u.weight) for u in uses],
        "late_blur": [int(u.blur) for u in uses],
        "late_warped_weight": [float(u.warped_weight) for u in uses],
    }
    return replace(config, codec=PROBABILITY_CODEC, params=params)


def without_late_average(config: ModelConfig) -> ModelConfig:
    """`config` fusing features again, with its learned codec when it has a bottleneck (e.g. to
    compare both modes on the same networks)."""
    late = ("late_average", "late_weight", "late_blur", "late_warped_weight")
    params = {k: v for k, v in config.params.items() if k not in late}
    codec = "learned" if "bottleneck" in params else ModelConfig.codec
    return replace(config, codec=codec, params=params)


def check_codec(config: ModelConfig, codec: str) -> None:
    """Raise ValueError when `codec` cannot carry this configuration's downlink: the
    probability codec clips features to [LOG_PROBABILITY_FLOOR, 0], the learned one only codes
    features."""
    if is_late_average(config) and codec == "learned":
        raise ValueError(
            "the learned codec codes features; this model sends class log-probabilities"
        )
    if not is_late_average(config) and codec == PROBABILITY_CODEC:
        raise ValueError(f"{codec} carries class log-probabilities; this model sends features")


def downlink_use(config: ModelConfig, age_ticks: float) -> AnswerUse:
    """How the edge uses an answer `age_ticks` old: the averaging weights and blur in
    late-average mode, the feature gain otherwise."""
    if is_late_average(config):
        params = config.params
        blur = int(per_age(params.get("late_blur", [1]), age_ticks))
        warped = per_age(params.get("late_warped_weight", [0.0]), age_ticks)
        return AnswerUse(per_age(params["late_weight"], age_ticks), blur, warped)
    return AnswerUse(downlink_gain(config, age_ticks))


def downlink_shape(system: SplitSystem) -> tuple[int, int, int]:
    """Shape [C, H, W] of one frame's downlink (before the codec)."""
    config = system.config
    if is_late_average(config):
        height, width = config.remote_size
        return (2 * config.num_classes, height // ENCODING_STRIDE, width // ENCODING_STRIDE)
    return system.local.downlink_shape(config.local_size)


def remote_downlink(
    system: SplitSystem, context: torch.Tensor, delay: torch.Tensor, local_size: tuple[int, int]
) -> torch.Tensor:
    """What the server sends (before the codec) for stacked encodings [B, C, K, h, w] told
    `delay` [B], to a local model at `local_size`."""
    if is_late_average(system.config):
        return remote_outputs(system, context, delay, local_size)[0]
    return system.remote.predict_downlink(context, delay, local_size)


def remote_outputs(
    system: SplitSystem, context: torch.Tensor, delay: torch.Tensor, local_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(`remote_downlink`, the predictive logits for `delay`) from one pass of the heads; in
    late-average mode the pass also answers for delay 0, and the downlink is the forecast's
    log-probabilities followed by the on-time answer's [B, 2 x classes, h, w]."""
    if not is_late_average(system.config):
        return system.remote.predict(context, delay, local_size)
    both = system.remote.predict_logits(
        torch.cat([context, context]), torch.cat([delay, torch.zeros_like(delay)])
    )
    logits = both[: len(delay)]
    return torch.cat([log_probabilities(logits), log_probabilities(both[len(delay) :])], 1), logits


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """What a late-average server sends: log-softmax floored where its codec floors it, so the
    edge sees the same range with or without a wire."""
    return logits.log_softmax(1).clamp_min_(LOG_PROBABILITY_FLOOR)


def average(
    local_logits: torch.Tensor,
    received: torch.Tensor,
    use: AnswerUse,
    flows: torch.Tensor | None = None,
) -> torch.Tensor:
    """The edge's class scores [B, classes, H, W] from its local-only logits and a received
    late-average downlink [B, 2 x classes, h, w] (forecast, on-time answer): local_logits +
    weight * log of the forecast's probabilities box-averaged over `blur` x `blur` cells +
    warped_weight * the on-time log-probabilities moved along `flows` [B, H', W', 2]
    (`splitcast.models.motion`; None: not moved), summed on the remote's grid and resized
    once. They equal log softmax(local) + those terms up to a per-pixel constant (the local
    log-sum-exp), which no argmax sees, so the edge skips the softmax; and it adds in place
    to the resized remote, because each fresh full-size tensor costs the edge about a
    millisecond."""
    classes = local_logits.shape[1]
    remote = received[:, :classes].exp()
    if use.blur > 1:
        remote = F.avg_pool2d(remote, use.blur, 1, use.blur // 2, count_include_pad=False)
    remote = remote.log_().mul_(use.weight)
    if use.warped_weight:
        on_time = received[:, classes:]
        moved = on_time if flows is None else warp_to_now(on_time, flows)
        remote = remote.add_(moved, alpha=use.warped_weight)
    return resize(remote, tuple(local_logits.shape[-2:])).add_(local_logits)


def edge_scores(
    system: SplitSystem,
    features: Features,
    local_logits: torch.Tensor,
    received: torch.Tensor,
    use: AnswerUse,
    size: tuple[int, int],
    flows: torch.Tensor | None = None,
) -> torch.Tensor:
    """The edge's class scores [B, classes, *size] for local input `size` with a received
    downlink (after the codec) used as `use`, from the local encoder's `features` and the
    local-only logits they give; `flows`: late average only, see `average`."""
    if is_late_average(system.config):
        return average(local_logits, received, use, flows)
    return system.local.decode(features, received * use.weight, size)
