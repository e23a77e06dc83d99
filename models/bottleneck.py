"""The learned downlink bottleneck: few integer symbols per position instead of D floats.

analysis (stride-s conv, D -> width channels) -> rounding to integers in [-support, support]
-> synthesis (back to D channels at the fusion grid). Each latent channel has its own learned
probability mass function over the integers (a factorised entropy model), which gives the
rate term of training and, frozen into integer frequency tables, the entropy coder's model.

Training rounds with a straight-through gradient; the rate estimate interpolates the per-channel
code length between the two integers around each value, so it is differentiable in the values
and equals the exact code length (-log2 p) at integers. `finalize_tables` turns the learned
distributions into integer tables once; encoder and decoder read only those integers, so the
decoded symbols are bit-exact on any machine.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TABLE_PRECISION_BITS = 16


class FeatureBottleneck(nn.Module):
    """Analysis/synthesis transforms, per-channel symbol distributions and their tables."""

    def __init__(
        self, channels: int, width: int = 16, support: int = 15, hidden: int = 64, stride: int = 2
    ) -> None:
        super().__init__()
        self.channels = channels
        self.width = width
        self.support = support
        self.stride = stride
        self.analysis = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, stride=stride, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, width, 1),
        )
        self.synthesis = nn.Sequential(
            nn.Conv2d(width, hidden, 1),
            nn.GELU(),
            nn.Upsample(scale_factor=stride, mode="nearest"),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 1),
        )
        symbols = 2 * support + 1
        centred = -torch.arange(-support, support + 1, dtype=torch.float32).abs()
        self.logits = nn.Parameter(centred.repeat(width, 1))
        self.register_buffer("tables", torch.zeros(width, symbols, dtype=torch.int32))

    @property
    def alphabet(self) -> int:
        return 2 * self.support + 1

    def latent(self, features: torch.Tensor) -> torch.Tensor:
        """Continuous latent [B, width, H/s, W/s], clamped to the coded range."""
        height, width = features.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(
                f"feature grid {height}x{width} is not divisible by the bottleneck stride "
                f"{self.stride}"
            )
        return self.analysis(features).clamp(-self.support, self.support)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructed features, estimated bits per item [B]) of quantised latents."""
        latent = self.latent(features)
        rounded = latent + (torch.round(latent) - latent).detach()
        return self.synthesis(rounded), self.estimated_bits(latent)

    def estimated_bits(self, latent: torch.Tensor) -> torch.Tensor:
        """Code length in bits per item [B] under the learned distributions, interpolated
        between neighbouring integers."""
        code_lengths = -F.log_softmax(self.logits, dim=-1) / math.log(2.0)
        position = latent + self.support
        low = position.detach().floor().clamp(max=self.alphabet - 2).long()
        fraction = position - low
        channel = torch.arange(self.width, device=latent.device).view(1, -1, 1, 1).expand_as(low)
        cost = (1 - fraction) * code_lengths[channel, low] + fraction * code_lengths[
            channel, low + 1
        ]
        return cost.flatten(1).sum(1)

    def symbols(self, features: torch.Tensor) -> torch.Tensor:
        """Integer symbols in [0, alphabet) [B, width, H/s, W/s]: what the wire carries."""
        return (torch.round(self.latent(features)) + self.support).to(torch.int64)

    def reconstruct(self, symbols: torch.Tensor) -> torch.Tensor:
        """Features [B, D, H, W] from integer symbols."""
        return self.synthesis((symbols - self.support).float())

    @torch.inference_mode()
    def symbols_of(self, features: np.ndarray) -> np.ndarray:
        """One frame's symbols [width, h, w] from its features [D, H, W] (the learned codec's
        analysis, on arrays)."""
        return self.symbols(torch.from_numpy(features).float().unsqueeze(0))[0].numpy()

    @torch.inference_mode()
    def features_of(self, symbols: np.ndarray) -> np.ndarray:
        """One frame's features [D, H, W] from its symbols [width, h, w] (the learned codec's
        synthesis, on arrays)."""
        return self.reconstruct(torch.from_numpy(symbols).long().unsqueeze(0))[0].numpy()

    def finalize_tables(self) -> None:
        """Freeze the learned distributions into integer frequencies summing to
        2**TABLE_PRECISION_BITS, every symbol at least 1 (so any symbol stays codable)."""
        total = 1 << TABLE_PRECISION_BITS
        probabilities = torch.softmax(self.logits.detach().double(), dim=-1)
        counts = torch.floor(probabilities * (total - self.alphabet)).long() + 1
        remainder = total - counts.sum(dim=-1)
        counts[torch.arange(self.width), probabilities.argmax(dim=-1)] += remainder
        self.tables.copy_(counts.to(torch.int32))

    @property
    def finalized(self) -> bool:
        return bool((self.tables > 0).all())

    def table_bits(self, symbols: torch.Tensor) -> torch.Tensor:
        """Exact code length in bits per item [B] of `symbols` under the integer tables."""
        lengths = TABLE_PRECISION_BITS - torch.log2(self.tables.double())
        channel = torch.arange(self.width).view(1, -1, 1, 1).expand_as(symbols)
        return lengths[channel, symbols].flatten(1).sum(1)
