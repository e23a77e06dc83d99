"""On-device alignment of late downlink features to the current frame.

The remote forecasts where the scene will be when its answer is used, but only from frames
that are already `delay` ticks old; whatever it gets wrong is visible on the device, which
has the current frame. `DownlinkAlign` compares the downlink features with the local
encoder's features of the current frame and resamples the downlink along a predicted smooth
displacement before fusion. It needs no extra input (not the delay, not older frames), so it
works the same in offline evaluation, live use and under delay mismatch. Its last layer starts
at zero: the alignment starts as the identity, so a trained model gains it without changing
its outputs.
"""

from __future__ import annotations

import torch

from splitcast.models.layers import CoarseMotion, shift_features


class DownlinkAlign(CoarseMotion):
    """Predicts a displacement field from (local features, downlink) on a grid pooled `pool`
    times and moves the downlink along it."""

    def __init__(self, channels: int, hidden: int = 64, pool: int = 2) -> None:
        super().__init__(2 * channels, hidden, pool)

    def forward(self, local: torch.Tensor, downlink: torch.Tensor) -> torch.Tensor:
        """`local` and `downlink` [B, C, h, w] on the same grid; returns the moved downlink."""
        return shift_features(downlink, self.field(torch.cat([local, downlink], dim=1)))
