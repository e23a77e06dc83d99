"""The on-device (local) segmentation model with early fusion of downlink features.

The encoder's stride-8 output (the paper's fusion point) or its stride-4 output receives the
remote model's downlink features by element-wise addition; deeper stages and an FPN-style
decoder (strides 32 -> 16 -> 8 -> 4) with a segmentation head follow. Fusing at stride 4 lets
a small local input take the remote's full stride-8 grid (a 128x256 local input has a 16x32
stride-8 grid, the 256x512 remote 32x64). `downlink=None` skips the addition, which is
exactly the local-only model (adding zeros gives the same result bit for bit).
"""

from __future__ import annotations

import torch
from torch import nn

from splitcast.models.backbones import LocalStages
from splitcast.models.layers import ConvNormAct, resize

FUSION_STRIDES = (4, 8)
Features = tuple[torch.Tensor, torch.Tensor | None]
HEAD_STRIDE = 4  # the logits' grid: the input's size over this


class LocalModel(nn.Module):
    """Staged encoder + FPN decoder; fusion point at stride 8 or 4, logits at stride 4."""

    def __init__(
        self,
        stages: LocalStages,
        num_classes: int,
        decoder_width: int = 64,
        fusion_stride: int = 8,
    ) -> None:
        super().__init__()
        if fusion_stride not in FUSION_STRIDES:
            raise ValueError(f"fusion_stride must be one of {FUSION_STRIDES}, not {fusion_stride}")
        self.stages = stages
        c4, c8, c16, c32 = stages.channels
        self.fusion_stride = fusion_stride
        self.fusion_channels = c4 if fusion_stride == 4 else c8
        self.lateral4 = nn.Conv2d(c4, decoder_width, 1)
        self.lateral8 = nn.Conv2d(c8, decoder_width, 1)
        self.lateral16 = nn.Conv2d(c16, decoder_width, 1)
        self.lateral32 = nn.Conv2d(c32, decoder_width, 1)
        self.head = nn.Sequential(
            ConvNormAct(decoder_width, decoder_width), nn.Conv2d(decoder_width, num_classes, 1)
        )

    def downlink_shape(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """Shape [C, H/s, W/s] of the downlink features this model fuses at input `size`."""
        height, width = size
        stride = self.fusion_stride
        return (self.fusion_channels, height // stride, width // stride)

    def encode(self, frame: torch.Tensor) -> Features:
        """The encoder up to the fusion point (shared by fused and local-only): stride-4
        features, and stride-8 ones when fusion happens there (else None)."""
        x4 = self.stages.stem4(self.stages.normalize(frame))
        return x4, self.stages.stem8(x4) if self.fusion_stride == 8 else None

    def decode(self, features: Features, downlink: torch.Tensor | None) -> torch.Tensor:
        """Fuse, run the rest of the encoder and the decoder; logits on the head's grid (the
        input's size over HEAD_STRIDE). Whoever needs classes resizes once, after combining:
        bilinear resizing is linear, so a sum resized once equals the sum of its resized
        parts, and the edge combines the remote's answer at a sixteenth of the pixels."""
        x4, x8 = features
        if x8 is None:
            if downlink is not None:
                x4 = x4 + downlink
            x8 = self.stages.stem8(x4)
        elif downlink is not None:
            x8 = x8 + downlink
        x16 = self.stages.stage16(x8)
        x32 = self.stages.stage32(x16)
        top = resize(self.lateral32(x32), x16.shape[-2:]) + self.lateral16(x16)
        merged = resize(top, x8.shape[-2:]) + self.lateral8(x8)
        merged = resize(merged, x4.shape[-2:]) + self.lateral4(x4)
        return self.head(merged)

    def forward(self, frame: torch.Tensor, downlink: torch.Tensor | None = None) -> torch.Tensor:
        """Segment `frame` [B, 3, H, W] in [0, 1]; returns class logits on the head's grid
        (see `decode`)."""
        return self.decode(self.encode(frame), downlink)
