"""Named model configurations: a config name builds a matching (remote, local) pair.

Edge and server build the same configuration by name; the server's info call reports the name
and version so the edge can check it is fusing features it understands. Random-init
configurations are seeded, so both processes build identical weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from splitcast.data.classes import CITYSCAPES_CLASSES
from splitcast.models.local import LocalModel
from splitcast.models.remote import RemoteModel


@dataclass(frozen=True)
class SystemConfig:
    """Everything both sides must agree on, independent of the weights."""

    name: str
    version: str
    num_classes: int
    remote_size: tuple[int, int]
    local_size: tuple[int, int]
    context_frames: int
    fps: float
    codec: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SplitSystem:
    """A configuration with its remote and local networks (eval mode)."""

    config: SystemConfig
    remote: RemoteModel
    local: LocalModel


Builder = Callable[[], SplitSystem]
_REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator adding a builder under `name` (users can register their own)."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model configuration {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return wrap


def available() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str) -> SplitSystem:
    """Build the named configuration in eval mode."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model configuration {name!r}; available: {', '.join(available())}"
        ) from None
    system = builder()
    system.remote.eval()
    system.local.eval()
    return system


@register("tiny")
def build_tiny() -> SplitSystem:
    """Small random-init pair (seed 0): runs in a few ms per frame; used by tests and demos."""
    config = SystemConfig(
        name="tiny",
        version="0.1.0-random-seed0",
        num_classes=len(CITYSCAPES_CLASSES),
        remote_size=(192, 384),
        local_size=(128, 256),
        context_frames=4,
        fps=30.0,
        codec="raw-fp16",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        local = LocalModel(config.num_classes, widths=(32, 64, 96))
        remote = RemoteModel(
            config.num_classes,
            downlink_channels=local.fusion_channels,
            context_frames=config.context_frames,
            width=64,
        )
    return SplitSystem(config, remote, local)
