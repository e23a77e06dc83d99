"""Channels-last weights for inference.

oneDNN's convolutions run on NHWC (and NDHWC) tensors without reordering them on every call,
which made the edge step and the server step faster with the same outputs to float rounding
(`benchmarks/bench_runtimes.py` and `benchmarks/bench_server.py` measure them). The server's
temporal model gains only when its 5-D input is channels-last too, so the runtime converts
the context it feeds it. Only runtimes use it: training keeps PyTorch's default layout.
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


def inference_layout_3d(*modules: nn.Module) -> torch.memory_format:
    """Store the modules' 5-D parameters (3D convolution weights) channels-last, in place;
    returns the layout their [N, C, T, H, W] inputs should have."""
    for module in modules:
        for parameter in module.parameters():
            if parameter.dim() == 5:
                parameter.data = parameter.data.contiguous(memory_format=torch.channels_last_3d)
    return torch.channels_last_3d
