"""The typed parts of a model configuration.

- `ModelConfig`: the wire contract both sides must agree on (sizes, K, frame rate, uplink
  encoding, the answer combiner and its codec), the edge's per-age policy, and the networks:
- `NetworkSettings`: the architecture's own knobs, one typed class per architecture
  (`TinySettings`, `LiteSettings`, `PaperSettings`, or one a new architecture registers);
- `BottleneckSettings`: the learned downlink codec's bottleneck, when the model has one;
- `TrainedParts`: which parts of the networks the checkpoint's weights trained, so that the
  parts left as packaged are rebuilt from their packages instead of stored.

Training options (epochs, learning rate, losses) are not part of a model: see
`splitcast.models.train_options`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from splitcast.data.classes import CITYSCAPES_CLASSES
from splitcast.data.images import FORMATS as UPLINK_FORMATS
from splitcast.models.answers import DEFAULT_HORIZON_TICKS, AnswerUse, check_uses
from splitcast.models.codec_names import CODEC_NAMES, COMBINER_NAMES
from splitcast.models.combiners import FeatureFusion
from splitcast.models.errors import ConfigError

TOP_STAGE_STRIDE = 16  # `--train-remote-top` alone trains the backbone above this stride


@dataclass(frozen=True)
class NetworkSettings:
    """Knobs every architecture reads."""

    seed: int = 0
    fusion_stride: int = 8
    """Where the local model adds fused features: stride 8 as in the paper, or 4."""
    forecast_warp: bool = False
    """The remote's forecast warp (`splitcast.models.remote.ForecastWarp`)."""
    warp_hidden: int = 96


@dataclass(frozen=True)
class TinySettings(NetworkSettings):
    local_widths: tuple[int, ...] = (32, 64, 96)
    remote_widths: tuple[int, ...] = (32, 64, 96)
    width: int = 32
    temporal_depth: int = 1


@dataclass(frozen=True)
class LiteSettings(NetworkSettings):
    decoder_width: int = 64
    width: int = 64
    temporal_depth: int = 2
    delay_hidden: int = 128
    head_width: int = 128


@dataclass(frozen=True)
class PaperSettings(NetworkSettings):
    decoder_width: int = 96
    remote_weights: str | None = None
    """A local file of EfficientViT-L1 segmentation weights for the remote backbone."""


@dataclass(frozen=True)
class BottleneckSettings:
    """`splitcast.models.bottleneck.FeatureBottleneck` keyword arguments."""

    width: int = 16
    stride: int = 2


@dataclass(frozen=True)
class TrainedParts:
    """What a checkpoint's weights trained beyond the default: a frozen remote backbone is
    rebuilt from its package (not stored), except the stages above `remote_trained_from`
    (16: the top stage, 8: the stride-16 stage too), which were trained on cached features."""

    freeze_remote_backbone: bool = False
    remote_trained_from: int | None = None


SETTINGS_TYPES: dict[str, type[NetworkSettings]] = {}
"""The settings class of each registered architecture (filled by `register_architecture`)."""


def _typed(kind: type, values: Any, what: str, key: tuple[str | int, ...] = ()) -> Any:
    """`kind(**values)` with lists made tuples, after checking every field's name and type (an
    unknown, missing or mistyped field is a `ConfigError` naming it; `key` is where `values`
    sits in the whole configuration)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{what}s must be a mapping, not {values!r}", key)
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(str(name) for name in values if name not in known)
    if unknown:
        raise ConfigError(
            f"unknown {what}: {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            (*key, unknown[0]),
        )
    hints = get_type_hints(kind)
    for name, value in values.items():
        if not _fits(value, hints[name]):
            expected = hints[name].__name__ if isinstance(hints[name], type) else hints[name]
            raise ConfigError(f"{what} {name} must be {expected}, not {value!r}", (*key, name))
    for name, spec in known.items():
        if name not in values and spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(f"{what} {name} is missing", key)
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _fits(value: Any, hint: Any) -> bool:
    """Whether a YAML/JSON value can stand for a field of type `hint` (lists for tuples, an
    integer for a float); a part with its own checks (a mapping, a dataclass) always fits."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return any(_fits(value, option) for option in args)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if args[-1] is Ellipsis:
            return all(_fits(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(_fits, value, args))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return not isinstance(hint, type) or is_dataclass(hint) or isinstance(value, hint)


@dataclass(frozen=True)
class ModelConfig:
    """Everything edge and cloud must agree on, and the networks' settings (not the weights)."""

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
    horizon_ticks: int = DEFAULT_HORIZON_TICKS
    """The answer horizon: the oldest answer age (ticks) the checkpoint is trained and
    calibrated for. Training samples delays up to it, calibration chooses a record for every
    age up to it, and the edge uses no older answer (it runs local-only and says why). A slow
    server or a long link makes answers old; the horizon is what lets the cloud still help."""
    policy: dict[str, tuple[AnswerUse, ...]] = field(default_factory=dict)
    """Per combiner, the per-age records calibration chose (index: age in whole ticks)."""
    network: NetworkSettings = field(default_factory=NetworkSettings)
    bottleneck: BottleneckSettings | None = None
    trained: TrainedParts = field(default_factory=TrainedParts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """A configuration from its JSON/YAML form (`to_dict`); unknown fields are an error."""
        values = dict(data)
        config = _typed(cls, {k: v for k, v in values.items() if k not in _PARTS}, "model field")
        settings = SETTINGS_TYPES.get(config.architecture)
        if settings is None:
            raise ConfigError(
                f"unknown architecture {config.architecture!r}; "
                f"registered: {', '.join(sorted(SETTINGS_TYPES))}",
                ("architecture",),
            )
        _check_names(config)
        if config.horizon_ticks < 0:
            raise ConfigError(
                f"horizon_ticks must be 0 or more, not {config.horizon_ticks}", ("horizon_ticks",)
            )
        bottleneck = values.get("bottleneck")
        policy = _policy(values.get("policy", {}))
        return replace(
            config,
            remote_size=tuple(int(v) for v in config.remote_size),
            local_size=tuple(int(v) for v in config.local_size),
            policy=policy,
            network=_typed(
                settings, values.get("network", {}), f"{config.architecture} setting", ("network",)
            ),
            bottleneck=None
            if bottleneck is None
            else _typed(BottleneckSettings, bottleneck, "bottleneck setting", ("bottleneck",)),
            trained=_typed(TrainedParts, values.get("trained", {}), "trained part", ("trained",)),
        )

    def with_policy(self, combiner: str, uses: Sequence[AnswerUse]) -> ModelConfig:
        """This configuration with `combiner`'s per-age records replaced."""
        check_uses(uses)
        return replace(self, policy={**self.policy, combiner: tuple(uses)})

    def with_network(self, **settings: Any) -> ModelConfig:
        """This configuration with some network settings changed (e.g. `forecast_warp=True`)."""
        return replace(self, network=replace(self.network, **settings))


_PARTS = ("policy", "network", "bottleneck", "trained")


def _policy(values: Any) -> dict[str, tuple[AnswerUse, ...]]:
    """The per-combiner, per-age records of a configuration's `policy` part, checked."""
    if not isinstance(values, dict):
        raise ConfigError(f"policy must map combiner names to lists, not {values!r}", ("policy",))
    policy = {}
    for name, records in values.items():
        if not isinstance(records, (list, tuple)):
            raise ConfigError(f"policy {name} must be a list of records", ("policy", name))
        policy[name] = tuple(
            _typed(AnswerUse, record, f"{name} policy field", ("policy", name, age))
            for age, record in enumerate(records)
        )
        try:
            check_uses(policy[name])
        except ValueError as exc:
            raise ConfigError(f"policy {name}: {exc}", ("policy", name)) from None
    return policy


def _check_names(config: ModelConfig) -> None:
    """Refuse a combiner, codec or uplink format no part of splitcast knows, by name."""
    known = {
        "combiner": COMBINER_NAMES,
        "codec": CODEC_NAMES,
        "uplink_format": UPLINK_FORMATS,
    }
    for field_name, names in known.items():
        value = getattr(config, field_name)
        if value not in names:
            raise ConfigError(
                f"unknown {field_name} {value!r}; known: {', '.join(names)}", (field_name,)
            )
