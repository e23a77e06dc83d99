"""Channels-last weights for CPU inference.

oneDNN's convolutions run on NHWC tensors without reordering them on every call; for our
networks on a 2-core AVX2 machine that made, with one thread, the local step 45 -> 33 ms
(default) and 17.5 -> 10.4 ms (tiny), and the server's step on two threads 170 -> 120 ms,
with identical class ids (`benchmarks/bench_memory_format.py` measures both layouts side by
side). Only runtimes use it: training keeps PyTorch's default layout.
"""

from __future__ import annotations

import torch
from torch import nn


def inference_layout(module: nn.Module, channels_last: bool = True) -> torch.memory_format:
    """Store `module`'s 4-D parameters (2D convolution weights) channels-last, in place, when
    asked; returns the layout its [N, C, H, W] inputs should have. 5-D weights (3D
    convolutions) keep theirs: channels-last is defined for 4-D tensors only."""
    if not channels_last:
        return torch.contiguous_format
    for parameter in module.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
    return torch.channels_last
