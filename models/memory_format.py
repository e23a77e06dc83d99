"""Channels-last weights for CPU inference.

oneDNN's convolutions run on NHWC tensors without reordering them on every call, which made
the edge step faster with identical class ids (`benchmarks/bench_runtimes.py` measures it).
Not everywhere: the remote's temporal model and heads, fed from 5-D reshapes, got slower, so
the server uses it for its per-frame encoder only.
Only runtimes use it: training keeps PyTorch's default layout.
"""

from __future__ import annotations

import torch
from torch import nn


def inference_layout(*modules: nn.Module, channels_last: bool = True) -> torch.memory_format:
    """Store the modules' 4-D parameters (2D convolution weights) channels-last, in place,
    when asked; returns the layout their [N, C, H, W] inputs should have. 5-D weights (3D
    convolutions) keep theirs: channels-last is defined for 4-D tensors only."""
    if not channels_last:
        return torch.contiguous_format
    for module in modules:
        for parameter in module.parameters():
            if parameter.dim() == 4:
                parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
    return torch.channels_last
