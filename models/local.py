"""The on-device (local) segmentation model with early fusion of downlink features.

The stride-8 feature map of the local encoder receives the remote model's downlink features by
element-wise addition; deeper stages, an FPN-style decoder and a segmentation head follow.
`downlink=None` skips the addition, which is exactly the local-only model (and adding zeros
gives the same result bit for bit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from splitcast.models.layers import ConvNormAct, InputNormalize, ResidualBlock

FUSION_STRIDE = 8


class LocalModel(nn.Module):
    """Small convolutional segmenter: stride 8 (fusion) -> 16 -> 32, FPN sum back to stride 8."""

    def __init__(
        self,
        num_classes: int,
        widths: tuple[int, int, int] = (32, 64, 96),
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        c8, c16, c32 = widths
        self.fusion_channels = c8
        self.normalize = InputNormalize(mean, std)
        self.stem = nn.Sequential(
            ConvNormAct(3, c8 // 2, stride=2),
            ConvNormAct(c8 // 2, c8 // 2, stride=2),
            ConvNormAct(c8 // 2, c8, stride=2),
            ResidualBlock(c8),
        )
        self.stage16 = nn.Sequential(ConvNormAct(c8, c16, stride=2), ResidualBlock(c16))
        self.stage32 = nn.Sequential(ConvNormAct(c16, c32, stride=2), ResidualBlock(c32))
        self.lateral32 = nn.Conv2d(c32, c8, 1)
        self.lateral16 = nn.Conv2d(c16, c8, 1)
        self.head = nn.Sequential(ConvNormAct(c8, c8), nn.Conv2d(c8, num_classes, 1))

    def downlink_shape(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """Shape [C, H/8, W/8] of the downlink features this model fuses at input `size`."""
        height, width = size
        return (self.fusion_channels, height // FUSION_STRIDE, width // FUSION_STRIDE)

    def forward(self, frame: torch.Tensor, downlink: torch.Tensor | None = None) -> torch.Tensor:
        """Segment `frame` [B, 3, H, W] in [0, 1]; returns class logits [B, classes, H, W]."""
        x8 = self.stem(self.normalize(frame))
        if downlink is not None:
            x8 = x8 + downlink
        x16 = self.stage16(x8)
        x32 = self.stage32(x16)
        up = F.interpolate(self.lateral32(x32), size=x16.shape[-2:], mode="bilinear")
        up = F.interpolate(up + self.lateral16(x16), size=x8.shape[-2:], mode="bilinear")
        logits = self.head(x8 + up)
        return F.interpolate(logits, size=frame.shape[-2:], mode="bilinear")
