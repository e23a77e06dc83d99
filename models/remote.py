"""The cloud (remote) model: sees the last K frames it received and is told how late its
answer will be used.

Per-frame encoder (backbone pyramid -> neck, stride 8) -> delay embedding added to every token
-> temporal model over the K frames -> time folded into channels -> optionally a forecast warp
(the folded features moved along a predicted motion field x delay) -> two heads: predictive
logits (the scene `delay` ticks after the newest frame) and downlink features resized to the
local model's grid at its fusion stride.

Only the heads asked for run (`outputs`), so a server computes nothing it does not send. In
streaming use each new frame is encoded once and kept in a FIFO of the last K encodings
(`splitcast.models.remote_stream`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from splitcast.models.backbones import PyramidBackbone
from splitcast.models.layers import (
    CoarseMotion,
    Conv3dBlock,
    ConvNormAct,
    MBConv3d,
    ResidualBlock,
    SelfAttention,
    resize,
    shift_features,
)

HEADS = ("logits", "downlink")
"""The remote model's named outputs (`RemoteModel.outputs`)."""
ENCODING_STRIDE = 8  # the neck's output grid, where the temporal model and heads run


class DelayEmbedding(nn.Module):
    """MLP from the float delay (ticks) to one vector added to every token."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, delay: torch.Tensor) -> torch.Tensor:
        return self.mlp(delay.float().view(-1, 1))


class PyramidNeck(nn.Module):
    """Fuses stride 8/16/32 features top-down into one `ENCODING_STRIDE` map of `width`
    channels."""

    def __init__(self, channels: tuple[int, int, int], width: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.out = ConvNormAct(width, width)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x8, x16, x32 = (lateral(f) for lateral, f in zip(self.laterals, features, strict=True))
        x16 = x16 + resize(x32, x16.shape[-2:])
        return self.out(x8 + resize(x16, x8.shape[-2:]))


class ConvTemporal(nn.Module):
    """Residual 3D convolutions across time and space (the light temporal model)."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Conv3dBlock(width) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ViT3D(nn.Module):
    """Global attention over all K*h*w tokens, each block followed by a 3x3x3 MBConv."""

    def __init__(self, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.ModuleList(SelfAttention(width, heads) for _ in range(depth))
        self.convs = nn.ModuleList(MBConv3d(width, expand=4) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, steps, height, width = x.shape
        for attention, conv in zip(self.attention, self.convs, strict=True):
            tokens = attention(x.flatten(2).transpose(1, 2))
            x = conv(tokens.transpose(1, 2).reshape(batch, channels, steps, height, width))
        return x


class ForecastWarp(CoarseMotion):
    """Moves the folded features along a predicted per-tick motion field times the delay.

    The temporal convolutions reach about two grid cells, while the scene moves further than
    that over a few ticks. A coarse branch (the grid pooled `pool` times, plus each cell's
    position, since ego-motion's flow depends on where a cell is in the image) predicts a
    smooth displacement per tick; the features are resampled along displacement x delay, so
    delay 0 is exactly no warp. It starts as the identity (see `CoarseMotion`).
    """

    def __init__(self, channels: int, hidden: int, pool: int = 4) -> None:
        super().__init__(channels, hidden, pool)

    def forward(self, folded: torch.Tensor, delay: torch.Tensor) -> torch.Tensor:
        shift = self.field(folded) * delay.to(folded.dtype).view(-1, 1, 1, 1)
        return shift_features(folded, shift)


class RemoteModel(nn.Module):
    """Delay-conditioned video model producing predictive logits and downlink features."""

    def __init__(
        self,
        backbone: PyramidBackbone,
        temporal: nn.Module,
        num_classes: int,
        downlink_channels: int,
        context_frames: int,
        width: int,
        delay_hidden: int,
        head_width: int,
        head_blocks: tuple[int, int] = (1, 1),
        fusion_stride: int = 8,
        warp: ForecastWarp | None = None,
    ) -> None:
        super().__init__()
        self.context_frames = context_frames
        self.fusion_stride = fusion_stride
        self.backbone = backbone
        self.neck = PyramidNeck(backbone.channels, width)
        self.delay_embedding = DelayEmbedding(width, delay_hidden)
        self.temporal = temporal
        self.warp = warp
        folded = width * context_frames
        self.logits_head = nn.Sequential(
            ConvNormAct(folded, head_width, kernel=1),
            ConvNormAct(head_width, head_width),
            nn.Conv2d(head_width, num_classes, 1),
        )
        self.downlink_trunk = nn.Sequential(
            ConvNormAct(folded, head_width, kernel=1),
            *(ResidualBlock(head_width) for _ in range(head_blocks[0])),
        )
        self.downlink_out = nn.Sequential(
            *(ResidualBlock(head_width) for _ in range(head_blocks[1])),
            nn.Conv2d(head_width, downlink_channels, 1),
        )

    def encode_features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Per-frame encoding [B, C, H/8, W/8] from backbone features (cached in training)."""
        return self.neck(features)

    def encode(self, frame: torch.Tensor) -> torch.Tensor:
        """Per-frame encoding of `frame` [B, 3, H, W] in [0, 1]."""
        return self.encode_features(self.backbone(frame))

    def outputs(
        self,
        encodings: torch.Tensor,
        delay: torch.Tensor,
        local_size: tuple[int, int] | None,
        names: Sequence[str] = HEADS,
    ) -> dict[str, torch.Tensor]:
        """The heads named in `names` (of `HEADS`) on stacked encodings [B, C, K, h, w]
        (oldest first) conditioned on `delay` [B]; only those heads run.

        `logits`: predictive logits [B, classes, h, w]; `downlink`: features [B, D, Hl/s, Wl/s]
        on the grid of a local model at `local_size` with fusion stride s.
        """
        unknown = sorted(set(names) - set(HEADS))
        if unknown:
            raise ValueError(f"unknown remote outputs {unknown}; the heads are {HEADS}")
        folded = self._fold(encodings, delay)
        result = {}
        if "logits" in names:
            result["logits"] = self.logits_head(folded)
        if "downlink" in names:
            if local_size is None:
                raise ValueError("the downlink head needs the local model's input size")
            result["downlink"] = self._downlink(folded, local_size)
        return result

    def _fold(self, encodings: torch.Tensor, delay: torch.Tensor) -> torch.Tensor:
        tokens = encodings + self.delay_embedding(delay)[:, :, None, None, None]
        folded = self.temporal(tokens).flatten(1, 2)
        return folded if self.warp is None else self.warp(folded, delay)

    def _downlink(self, folded: torch.Tensor, local_size: tuple[int, int]) -> torch.Tensor:
        grid = (local_size[0] // self.fusion_stride, local_size[1] // self.fusion_stride)
        return self.downlink_out(resize(self.downlink_trunk(folded), grid))

    def forward(
        self,
        frames: torch.Tensor,
        delay: torch.Tensor,
        local_size: tuple[int, int] | None,
        names: Sequence[str] = HEADS,
    ) -> dict[str, torch.Tensor]:
        """`frames` [B, 3, K, H, W] oldest first; see `outputs`."""
        batch, _, steps, height, width = frames.shape
        flat = frames.permute(0, 2, 1, 3, 4).reshape(batch * steps, 3, height, width)
        encoded = self.encode(flat)
        encodings = encoded.view(batch, steps, *encoded.shape[1:]).permute(0, 2, 1, 3, 4)
        return self.outputs(encodings, delay, local_size, names)

    def image_only_from_encoding(self, encoding: torch.Tensor) -> torch.Tensor:
        """The conventional remote baseline's logits from one frame's encoding: the frame
        repeated K times, delay 0 (no motion context, no delay correction)."""
        encodings = encoding.unsqueeze(2).expand(-1, -1, self.context_frames, -1, -1)
        zero = torch.zeros(encoding.shape[0], device=encoding.device)
        return self.outputs(encodings, zero, None, ("logits",))["logits"]

    def image_only(self, frame: torch.Tensor) -> torch.Tensor:
        """Predictive logits of the conventional remote baseline on `frame` [B, 3, H, W]."""
        return self.image_only_from_encoding(self.encode(frame))
