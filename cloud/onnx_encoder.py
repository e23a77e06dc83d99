"""The remote model's per-frame encoder (backbone + neck) run by ONNX Runtime.

The encoder is the one part of the server's step that sees every frame at full remote
resolution, and ONNX Runtime runs it much faster than PyTorch eager on a CPU
(`benchmarks/bench_runtimes.py` measures the server step both ways). The temporal model and
heads stay in PyTorch: exported too they gained little, and the delay-conditioned part is the
one people change.
"""

from __future__ import annotations

import torch
from torch import nn

from splitcast.models.onnx_program import OnnxProgram
from splitcast.models.remote import RemoteModel


class RemoteEncoder(nn.Module):
    """`RemoteModel.encode` as a module of its own: frame [1, 3, H, W] in [0, 1] -> encoding."""

    def __init__(self, remote: RemoteModel) -> None:
        super().__init__()
        self.backbone = remote.backbone
        self.neck = remote.neck

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(frame))


def onnx_encoder(remote: RemoteModel, image_size: tuple[int, int], threads: int) -> OnnxProgram:
    """The encoder exported (or found in the cache) and loaded for batch-1 frames."""
    return OnnxProgram(RemoteEncoder(remote), (torch.zeros(1, 3, *image_size),), ["frame"], threads)
