"""The cloud (remote) model: sees the last K frames it received and is told how late its
answer will be used.

Per-frame 2D encoder (stride 8) -> delay embedding added to every token -> temporal model over
the K frames -> time folded into channels -> two heads: predictive logits (what the scene will
look like `delay` ticks after the newest frame) and downlink features pooled to the local
model's stride-8 grid.

In streaming use each new frame is encoded once and kept in a FIFO of the last K encodings
(`stream_init` / `stream_step`), which gives the same result as `forward` on those K frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from splitcast.models.layers import ConvNormAct, InputNormalize, ResidualBlock

FUSION_STRIDE = 8


class DelayEmbedding(nn.Module):
    """MLP from the float delay (ticks) to one vector added to every token."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, delay: torch.Tensor) -> torch.Tensor:
        return self.mlp(delay.float().view(-1, 1))


class TemporalConv3d(nn.Module):
    """Residual separable 3D convolutions (depthwise 3x3x3, then pointwise) over time and space."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv3d(channels, channels, 3, padding=1, groups=channels, bias=False),
                nn.GroupNorm(8, channels),
                nn.Conv3d(channels, channels, 1),
                nn.GELU(),
                nn.Conv3d(channels, channels, 1),
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x


@dataclass
class StreamState:
    """FIFO of the most recent per-frame encodings of one stream."""

    encodings: deque[torch.Tensor] = field(default_factory=deque)


class RemoteModel(nn.Module):
    """Delay-conditioned video model producing predictive logits and downlink features."""

    def __init__(
        self,
        num_classes: int,
        downlink_channels: int,
        context_frames: int = 4,
        width: int = 64,
        temporal_depth: int = 2,
        delay_hidden: int = 128,
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        self.context_frames = context_frames
        self.normalize = InputNormalize(mean, std)
        self.encoder = nn.Sequential(
            ConvNormAct(3, width // 4, stride=2),
            ConvNormAct(width // 4, width // 2, stride=2),
            ConvNormAct(width // 2, width, stride=2),
            ResidualBlock(width),
        )
        self.delay_embedding = DelayEmbedding(width, delay_hidden)
        self.temporal = TemporalConv3d(width, temporal_depth)
        folded = width * context_frames
        self.logits_head = nn.Sequential(
            ConvNormAct(folded, width, kernel=1), nn.Conv2d(width, num_classes, 1)
        )
        self.downlink_trunk = nn.Sequential(
            ConvNormAct(folded, width, kernel=1), ResidualBlock(width)
        )
        self.downlink_out = nn.Sequential(
            ResidualBlock(width), nn.Conv2d(width, downlink_channels, 1)
        )

    def encode(self, frame: torch.Tensor) -> torch.Tensor:
        """Per-frame encoding [B, C, H/8, W/8] of `frame` [B, 3, H, W] in [0, 1]."""
        return self.encoder(self.normalize(frame))

    def predict(
        self, encodings: torch.Tensor, delay: torch.Tensor, local_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Heads on stacked encodings [B, C, K, h, w] (oldest first) conditioned on `delay` [B].

        Returns (downlink [B, D, Hl/8, Wl/8], predictive logits [B, classes, h, w]).
        """
        tokens = encodings + self.delay_embedding(delay)[:, :, None, None, None]
        mixed = self.temporal(tokens)
        folded = mixed.flatten(1, 2)
        logits = self.logits_head(folded)
        grid = (local_size[0] // FUSION_STRIDE, local_size[1] // FUSION_STRIDE)
        pooled = F.adaptive_avg_pool2d(self.downlink_trunk(folded), grid)
        return self.downlink_out(pooled), logits

    def forward(
        self, frames: torch.Tensor, delay: torch.Tensor, local_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`frames` [B, 3, K, H, W] oldest first; see `predict` for the outputs."""
        batch, _, steps, height, width = frames.shape
        flat = frames.permute(0, 2, 1, 3, 4).reshape(batch * steps, 3, height, width)
        encoded = self.encode(flat)
        encodings = encoded.view(batch, steps, *encoded.shape[1:]).permute(0, 2, 1, 3, 4)
        return self.predict(encodings, delay, local_size)

    def image_only(self, frame: torch.Tensor, local_size: tuple[int, int]) -> torch.Tensor:
        """Conventional remote baseline: one frame, no motion context, no delay correction."""
        frames = frame.unsqueeze(2).expand(-1, -1, self.context_frames, -1, -1)
        zero_delay = torch.zeros(frame.shape[0], device=frame.device)
        return self.forward(frames, zero_delay, local_size)[1]

    def stream_init(self) -> StreamState:
        """A fresh stream with an empty FIFO of encodings."""
        return StreamState(deque(maxlen=self.context_frames))

    def stream_step(
        self,
        state: StreamState,
        frame: torch.Tensor,
        delay: torch.Tensor,
        local_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the new `frame` once, push it into the FIFO and predict.

        Until K frames have arrived, the oldest encoding is repeated to fill the context.
        """
        state.encodings.append(self.encode(frame))
        missing = self.context_frames - len(state.encodings)
        window = [state.encodings[0]] * missing + list(state.encodings)
        return self.predict(torch.stack(window, dim=2), delay, local_size)
