"""Building blocks shared by the local and remote networks.

Everything here has fixed-shape, data-independent control flow, so the models export to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """Conv2d -> BatchNorm -> ReLU6: the basic unit of the small convolutional parts."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Depthwise 3x3 + pointwise expansion with a skip connection (MBConv-like), same shape."""

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MBConv3d(nn.Module):
    """Residual inverted bottleneck over (time, height, width): pointwise expand, depthwise
    3x3x3, pointwise project, GroupNorm (batch-size independent)."""

    def __init__(self, channels: int, expand: int = 4, groups: int = 8) -> None:
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            nn.Conv3d(channels, hidden, 1, bias=False),
            nn.GroupNorm(groups, hidden),
            nn.GELU(),
            nn.Conv3d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.GroupNorm(groups, hidden),
            nn.GELU(),
            nn.Conv3d(hidden, channels, 1, bias=False),
            nn.GroupNorm(groups, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FrameWiseConv3d(nn.Conv3d):
    """A dense 3D convolution (stride 1, "same" padding) that, for a single clip on CPU, is
    computed as 2D convolutions of every frame, shifted in time and summed.

    Same parameters and result (to float rounding) as `nn.Conv3d`. PyTorch's CPU 3D
    convolution costs about as much for one clip as for eight, and the frame-wise form much
    less for one, so the streaming server's batch-1 step takes the frame-wise path and batches
    keep the 3D kernel. The branch depends on shapes only, so fixed-shape ONNX export still works.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, bias: bool = False
    ) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1 or x.device.type != "cpu":
            return super().forward(x)
        _, _, steps, height, width = x.shape
        k_time, k_height, k_width = self.kernel_size
        frames = x[0].transpose(0, 1)
        weight = self.weight.permute(2, 0, 1, 3, 4).reshape(
            k_time * self.out_channels, self.in_channels, k_height, k_width
        )
        per_offset = F.conv2d(frames, weight, padding=(k_height // 2, k_width // 2))
        per_offset = per_offset.view(steps, k_time, self.out_channels, height, width)
        pad = k_time // 2
        padded = F.pad(per_offset, (0, 0, 0, 0, 0, 0, 0, 0, pad, pad))
        out = sum(padded[k : k + steps, k] for k in range(k_time))
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out.transpose(0, 1).unsqueeze(0)


class Conv3dBlock(nn.Module):
    """Residual dense 3x3x3 convolution across time and space, then a pointwise mix.

    Dense rather than depthwise: on CPUs the backward pass of a depthwise 3D convolution is
    about five times slower than a dense one of the same width.
    """

    def __init__(self, channels: int, groups: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            FrameWiseConv3d(channels, channels, 3),
            nn.GroupNorm(groups, channels),
            nn.GELU(),
            nn.Conv3d(channels, channels, 1, bias=False),
            nn.GroupNorm(groups, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over a token sequence [B, N, C] with a residual."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, count, channels = tokens.shape
        qkv = self.qkv(self.norm(tokens)).view(batch, count, 3, self.heads, channels // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)
        return tokens + self.proj(attended.transpose(1, 2).reshape(batch, count, channels))


class TransformerBlock2d(nn.Module):
    """ViT block (attention + MLP) on a feature map [B, C, H, W]."""

    def __init__(self, channels: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.attention = SelfAttention(channels, heads)
        self.mlp = nn.Sequential(
            nn.LayerNorm(channels),
            nn.Linear(channels, channels * mlp_ratio),
            nn.GELU(),
            nn.Linear(channels * mlp_ratio, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.attention(x.flatten(2).transpose(1, 2))
        tokens = tokens + self.mlp(tokens)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class InputNormalize(nn.Module):
    """Maps RGB images in [0, 1] to the statistics a backbone was trained with."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (exports to ONNX Resize with fixed output size)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def grid_positions(x: torch.Tensor) -> torch.Tensor:
    """Cell centres of `x`'s grid in grid_sample's [-1, 1] coordinates: [B, 2 (x, y), h, w]."""
    batch, _, height, width = x.shape
    ys = (torch.arange(height, device=x.device, dtype=x.dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=x.device, dtype=x.dtype) * 2 + 1) / width - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0)
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


def shift_features(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`x` [B, C, h, w] resampled at each cell centre plus `shift` [B, 2, h, w] (grid_sample
    units, x then y; zero is exactly `x`), clamped at the border."""
    grid = (grid_positions(x) + shift).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


class CoarseMotion(nn.Module):
    """Base of the learned warps: predicts a smooth displacement field for a feature map from
    its grid pooled `pool` times plus each cell's position. The last layer starts at zero, so
    a warp built on it starts as the identity and a trained model gains it without changing
    its outputs."""

    def __init__(self, channels: int, hidden: int, pool: int) -> None:
        super().__init__()
        self.pool = pool
        self.body = nn.Sequential(
            ConvNormAct(channels + 2, hidden, kernel=1),
            ResidualBlock(hidden),
            ResidualBlock(hidden),
            ConvNormAct(hidden, hidden),
        )
        self.motion = nn.Conv2d(hidden, 2, 3, padding=1)
        nn.init.zeros_(self.motion.weight)
        nn.init.zeros_(self.motion.bias)

    def field(self, x: torch.Tensor) -> torch.Tensor:
        """Displacement [B, 2, h, w] (grid_sample units) on `x`'s grid."""
        height, width = x.shape[-2:]
        coarse = F.adaptive_avg_pool2d(x, (height // self.pool, width // self.pool))
        motion = self.motion(self.body(torch.cat([coarse, grid_positions(coarse)], dim=1)))
        return resize(motion, (height, width))


def class_ids(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Argmax class ids [B, H, W] of `logits` [B, C, h, w] bilinearly resized to `size`.

    Computed channels-last, where the argmax reads contiguous memory: faster on a CPU than
    resizing and reducing over the channel axis of a contiguous tensor, same result. The ids
    come back on the CPU, where they are scored or sent, whatever device computed them.
    """
    channels_last = logits.float().contiguous(memory_format=torch.channels_last)
    return resize(channels_last, size).argmax(1).cpu()
