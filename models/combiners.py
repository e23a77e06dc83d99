"""Answer combiners: what the server computes and sends for the edge, and how the edge uses it.

A combiner is one way of turning a late remote answer into a better on-time output. It owns
everything that depends on that choice, so nothing else branches on which one is in use:
- which of the remote model's outputs the server computes (`RemoteModel.outputs` names);
- what travels: named tensors, their shapes and codec (`wire`);
- how the edge combines an answer of age D_o with its local model (`combine`, with the per-age
  record `AnswerUse` that calibration chose for that age);
- what calibration tries per age (`candidates`).

Two combiners exist:
- `FeatureFusion` (Dedelayed's method): the server sends delay-conditioned features on the
  local model's fusion grid; the edge adds them, scaled by the age's gain, inside its local
  model.
- `LateAverage` (the shipped checkpoint's): the server sends two maps of class
  log-probabilities on its stride-8 grid: its forecast for the delay it was told and its
  on-time answer for the newest frame it saw (delay 0). The edge runs local-only and outputs
  the weighted geometric average
  log p_local + w * log blur_k(p_forecast) + v * log moved(p_on_time): the forecast's
  probabilities box-averaged over k x k cells (a late forecast is right about what is around
  more often than about exactly where), the on-time answer moved to the current frame along
  the optical flow the edge measures (`splitcast.models.motion`: how the scene really moved
  while the answer was in flight, which the server can only forecast).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
import torch.nn.functional as F

from splitcast.models.answers import AnswerUse, WireTensor, use_at
from splitcast.models.codec_names import LOG_PROBABILITY_FLOOR, PROBABILITY_CODEC
from splitcast.models.layers import grid_positions, resize
from splitcast.models.remote import ENCODING_STRIDE

if TYPE_CHECKING:
    from splitcast.models.registry import SplitSystem

AnswerTensors = dict[str, torch.Tensor]
"""One answer (or a batch of them) as named tensors [B, C, h, w]."""


class LocalPass(Protocol):
    """The local model on a batch of frames, as a combiner needs it."""

    def local_only(self) -> torch.Tensor:
        """Local-only class logits [B, classes, H, W] (computed once)."""
        ...

    def fused(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits with `features` [B, C, h, w] added at the fusion point."""
        ...


class Combiner(Protocol):
    """What a server computes for an edge and how the edge combines it (see the module)."""

    name: ClassVar[str]
    needs_motion: ClassVar[bool]
    """Whether `combine` uses the flow from the current frame back to the answer's frame."""
    fuses_features: ClassVar[bool]
    """Whether `combine` uses the local model's fused pass (`LocalPass.fused`)."""
    policy: tuple[AnswerUse, ...]
    """The per-age records calibration chose (empty: every answer used as sent)."""

    def wire(self) -> tuple[WireTensor, ...]: ...

    def use_at(self, age_ticks: float) -> AnswerUse:
        """How an answer `age_ticks` old is used (see `use_at`)."""
        ...

    def answer(
        self, context: torch.Tensor, delay: torch.Tensor, also: tuple[str, ...] = ()
    ) -> tuple[AnswerTensors, dict[str, torch.Tensor]]:
        """The answer for stacked encodings [B, C, K, h, w] told `delay` [B] (before the
        codec), and the remote outputs named in `also` from the same pass."""
        ...

    def combine(
        self,
        local: LocalPass,
        answer: AnswerTensors,
        use: AnswerUse,
        flows: torch.Tensor | None,
    ) -> torch.Tensor:
        """The edge's class scores [B, classes, H, W]; `flows` [B, H', W', 2] from the current
        frames back to the answers' frames (None: not measured)."""
        ...

    def candidates(
        self,
        weights: Sequence[float] | None = None,
        blurs: Sequence[int] | None = None,
        moved_weights: Sequence[float] | None = None,
    ) -> list[AnswerUse]:
        """What calibration tries per age: every combination of the gains or forecast weights,
        blurs and moved-answer weights this combiner uses (None: its defaults)."""
        ...


class _PolicyAndWire:
    """What every combiner keeps: the remote model, its per-age policy and its wire tensors."""

    name: ClassVar[str]

    def __init__(self, system: SplitSystem, wire: tuple[WireTensor, ...]) -> None:
        self.remote = system.remote
        self.policy: tuple[AnswerUse, ...] = system.config.policy.get(self.name, ())
        self._wire = wire

    def wire(self) -> tuple[WireTensor, ...]:
        return self._wire

    def use_at(self, age_ticks: float) -> AnswerUse:
        return use_at(self.policy, age_ticks)


class FeatureFusion(_PolicyAndWire):
    """Dedelayed's method: delay-conditioned features added inside the local model."""

    name: ClassVar[str] = "feature_fusion"
    needs_motion: ClassVar[bool] = False
    fuses_features: ClassVar[bool] = True

    def __init__(self, system: SplitSystem, codec: str) -> None:
        if codec == PROBABILITY_CODEC:
            raise ValueError(f"{codec} carries class log-probabilities; {self.name} sends features")
        if codec == "learned" and system.bottleneck is None:
            raise ValueError("the learned codec needs a checkpoint with a learned bottleneck")
        self.local_size = system.config.local_size
        shape = system.local.downlink_shape(self.local_size)
        super().__init__(system, (WireTensor("features", shape, codec),))

    @staticmethod
    def default_codec(system: SplitSystem) -> str:
        """The learned codec when the checkpoint has a bottleneck, else raw float16."""
        return "learned" if system.bottleneck is not None else "raw-fp16"

    def answer(
        self, context: torch.Tensor, delay: torch.Tensor, also: tuple[str, ...] = ()
    ) -> tuple[AnswerTensors, dict[str, torch.Tensor]]:
        outputs = self.remote.outputs(context, delay, self.local_size, ("downlink", *also))
        return {"features": outputs["downlink"]}, outputs

    def combine(
        self,
        local: LocalPass,
        answer: AnswerTensors,
        use: AnswerUse,
        flows: torch.Tensor | None,
    ) -> torch.Tensor:
        return local.fused(answer["features"] * use.weight)

    def candidates(
        self,
        weights: Sequence[float] | None = None,
        blurs: Sequence[int] | None = None,
        moved_weights: Sequence[float] | None = None,
    ) -> list[AnswerUse]:
        if blurs or moved_weights:
            raise ValueError(f"{self.name} has one gain per age: no blur, no moved answer")
        return [AnswerUse(float(w)) for w in (weights or DEFAULT_GAINS)]


DEFAULT_GAINS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
DEFAULT_LATE_WEIGHTS = (0.3, 0.4, 0.5, 0.6)
DEFAULT_LATE_BLURS = (1, 3, 5, 7)
DEFAULT_LATE_WARPED_WEIGHTS = (0.0, 0.2, 0.3, 0.4)


class LateAverage(_PolicyAndWire):
    """The shipped checkpoint's combiner: the forecast and the on-time answer as class
    log-probabilities, pooled with the local output (see the module)."""

    name: ClassVar[str] = "late_average"
    needs_motion: ClassVar[bool] = True
    fuses_features: ClassVar[bool] = False
    TENSORS: ClassVar[tuple[str, str]] = ("forecast", "on_time")

    def __init__(self, system: SplitSystem, codec: str) -> None:
        if codec != PROBABILITY_CODEC:
            raise ValueError(
                f"{self.name} sends class log-probabilities with {PROBABILITY_CODEC}, not {codec}"
            )
        config = system.config
        height, width = config.remote_size
        grid = (config.num_classes, height // ENCODING_STRIDE, width // ENCODING_STRIDE)
        super().__init__(system, tuple(WireTensor(name, grid, codec) for name in self.TENSORS))

    @staticmethod
    def default_codec(system: SplitSystem) -> str:
        return PROBABILITY_CODEC

    def answer(
        self, context: torch.Tensor, delay: torch.Tensor, also: tuple[str, ...] = ()
    ) -> tuple[AnswerTensors, dict[str, torch.Tensor]]:
        """One pass of the logits head over the context twice: told `delay` (the forecast)
        and told 0 (the on-time answer)."""
        unknown = set(also) - {"logits"}
        if unknown:
            raise ValueError(f"{self.name} computes only the logits head, not {sorted(unknown)}")
        both = self.remote.outputs(
            torch.cat([context, context]),
            torch.cat([delay, torch.zeros_like(delay)]),
            None,
            ("logits",),
        )["logits"]
        forecast, on_time = both[: len(delay)], both[len(delay) :]
        answer = {"forecast": log_probabilities(forecast), "on_time": log_probabilities(on_time)}
        return answer, ({"logits": forecast} if also else {})

    def combine(
        self,
        local: LocalPass,
        answer: AnswerTensors,
        use: AnswerUse,
        flows: torch.Tensor | None,
    ) -> torch.Tensor:
        return pool(local.local_only(), answer["forecast"], answer["on_time"], use, flows)

    def candidates(
        self,
        weights: Sequence[float] | None = None,
        blurs: Sequence[int] | None = None,
        moved_weights: Sequence[float] | None = None,
    ) -> list[AnswerUse]:
        return [
            AnswerUse(float(w), int(k), float(v))
            for v in (moved_weights or DEFAULT_LATE_WARPED_WEIGHTS)
            for k in (blurs or DEFAULT_LATE_BLURS)
            for w in (weights or DEFAULT_LATE_WEIGHTS)
        ]


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """What a late-average server sends: log-softmax floored where its codec floors it, so the
    edge sees the same range with or without a wire."""
    return logits.log_softmax(1).clamp_min_(LOG_PROBABILITY_FLOOR)


def pool(
    local_logits: torch.Tensor,
    forecast: torch.Tensor,
    on_time: torch.Tensor,
    use: AnswerUse,
    flows: torch.Tensor | None = None,
) -> torch.Tensor:
    """local_logits + weight * log of the forecast's probabilities box-averaged over `blur`
    cells + warped_weight * the on-time log-probabilities moved along `flows` (None: not
    moved), summed on the remote's grid and resized to the local logits' grid when that
    differs (the same grid for the shipped models, so nothing is resized before the class
    ids). They equal log softmax(local) + those terms up to a per-pixel constant (the local
    log-sum-exp), which no argmax sees, so the edge skips the softmax; and it adds in place,
    because each fresh tensor costs the edge time."""
    remote = forecast.exp()
    if use.blur > 1:
        remote = box_average(remote, use.blur)
    remote = remote.log_().mul_(use.weight)
    if use.warped_weight:
        moved = on_time if flows is None else warp_to_now(on_time, flows)
        remote = remote.add_(moved, alpha=use.warped_weight)
    if remote.shape[-2:] != local_logits.shape[-2:]:
        remote = resize(remote, tuple(local_logits.shape[-2:]))
    return remote.add_(local_logits)


def box_average(maps: torch.Tensor, side: int) -> torch.Tensor:
    """Each cell of `maps` [B, C, h, w] averaged over the `side` x `side` box around it, the
    box clipped at the border: `avg_pool2d` without padding counted, as a column then a row of
    depthwise convolutions divided by each cell's count. The same numbers as a square box,
    and many times faster in ONNX Runtime, whose AveragePool and square depthwise Conv are slow
    at this size."""
    channels, size = maps.shape[1], tuple(maps.shape[-2:])
    column, row = maps.new_ones(channels, 1, side, 1), maps.new_ones(channels, 1, 1, side)

    def box_sums(x: torch.Tensor, groups: int) -> torch.Tensor:
        down = F.conv2d(x, column[:groups], padding=(side // 2, 0), groups=groups)
        return F.conv2d(down, row[:groups], padding=(0, side // 2), groups=groups)

    return box_sums(maps, channels) / box_sums(maps.new_ones(1, 1, *size), 1)


def warp_to_now(maps: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """`maps` [B, C, h, w] of the answers' frames moved to the current frames along `flows`
    [B, H, W, 2] (`MotionEstimator.backward_flow`, any frame size H x W): each cell takes the
    bilinear value where its content was; cells whose content came from outside the answer's
    frame take the nearest border value."""
    height, width = maps.shape[-2:]
    scale = torch.tensor(
        [2.0 / flows.shape[2], 2.0 / flows.shape[1]], dtype=maps.dtype
    )  # pixels -> grid_sample's [-1, 1] units
    shift = F.adaptive_avg_pool2d(flows.permute(0, 3, 1, 2).to(maps.dtype), (height, width))
    grid = grid_positions(maps) + shift * scale.view(1, 2, 1, 1)
    return F.grid_sample(
        maps, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=False
    )


_COMBINERS: dict[str, type[FeatureFusion] | type[LateAverage]] = {
    FeatureFusion.name: FeatureFusion,
    LateAverage.name: LateAverage,
}
COMBINERS = tuple(_COMBINERS)


def combiner_for(system: SplitSystem, codec: str | None = None) -> Combiner:
    """The combiner the system's configuration names, sending with `codec` (default: the
    configuration's)."""
    kind = _COMBINERS.get(system.config.combiner)
    if kind is None:
        raise ValueError(
            f"unknown combiner {system.config.combiner!r}; known: {', '.join(COMBINERS)}"
        )
    return kind(system, codec or system.config.codec)


def default_codec(system: SplitSystem, combiner: str) -> str:
    """The codec a system sends `combiner`'s answers with unless told otherwise."""
    return _COMBINERS[combiner].default_codec(system)
