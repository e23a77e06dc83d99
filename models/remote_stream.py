"""The remote side of one edge stream: the last K frame encodings, padded at the stream's start.

The server keeps one per edge stream; offline evaluation and the live replay build the same
windows from a clip's encodings (`window`), so both see exactly what a server would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

import torch


def padded(sequences: Sequence[int], context_frames: int) -> list[int]:
    """The last `context_frames` of `sequences` (oldest first), the oldest repeated in front
    until there are that many: what the remote model sees before K frames have arrived."""
    recent = list(sequences)[-context_frames:]
    return [recent[0]] * (context_frames - len(recent)) + recent


def window(
    encodings: Mapping[int, torch.Tensor], contexts: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Stacked encodings [B, C, K, h, w] of each context's frames (oldest first) from per-frame
    encodings [C, h, w] by sequence number."""
    return torch.stack([torch.stack([encodings[i] for i in c], dim=1) for c in contexts])


class RemoteStream:
    """FIFO of (sequence, encoding) for one stream; `push` gives the window to answer from."""

    def __init__(self, context_frames: int) -> None:
        self.context_frames = context_frames
        self._recent: deque[tuple[int, torch.Tensor]] = deque(maxlen=context_frames)

    def push(self, sequence: int, encoding: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """Add one frame's encoding [1, C, h, w]; returns the context's sequence numbers
        (oldest first, padded) and its stacked window [1, C, K, h, w]."""
        self._recent.append((sequence, encoding[0]))
        by_sequence = dict(self._recent)
        used = padded([s for s, _ in self._recent], self.context_frames)
        return used, window(by_sequence, [used])
