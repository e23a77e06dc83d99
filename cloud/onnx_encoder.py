"""The remote model's per-frame encoder (backbone + neck) run by ONNX Runtime.

The encoder is the one part of the server's step that sees every frame at full remote
resolution, and ONNX Runtime runs it much faster than PyTorch eager on this CPU (default
checkpoint, two threads: 112 ms -> 31 ms; `benchmarks/bench_runtimes.py`), because it
fuses each convolution with its normalisation and activation. The temporal model and heads
stay in PyTorch: exported too they gained only 60 -> 53 ms, and the delay-conditioned part is
the one people change.

Exported files are cached by a hash of the encoder's weights and input size, so a server
exports once per checkpoint (~15 s) and starts in about a second after that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import onnxruntime as ort
import torch
from torch import nn

from splitcast.models.remote import RemoteModel

log = logging.getLogger(__name__)

CACHE_ENV = "SPLITCAST_CACHE"


class _Encoder(nn.Module):
    """`RemoteModel.encode` as a module of its own: frame [1, 3, H, W] in [0, 1] -> encoding."""

    def __init__(self, remote: RemoteModel) -> None:
        super().__init__()
        self.remote = remote

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.remote.encode(frame)


def cache_dir() -> Path:
    """`$SPLITCAST_CACHE/onnx`, by default `~/.cache/splitcast/onnx`."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "splitcast"
    return Path(root) / "onnx"


def encoder_key(remote: RemoteModel, image_size: tuple[int, int]) -> str:
    """Changes whenever the exported graph would: weights, input size, torch version."""
    digest = hashlib.sha256(f"{image_size}|{torch.__version__}".encode())
    for part in (remote.backbone, remote.neck):
        for name, tensor in part.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_encoder(remote: RemoteModel, image_size: tuple[int, int], path: Path) -> None:
    """Write the encoder at batch 1 and `image_size` as a self-contained ONNX file; the file
    appears complete or not at all (servers may export concurrently)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, *image_size)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        partial = Path(scratch) / path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Encoder(remote).eval(),
                (example,),
                str(partial),
                input_names=["frame"],
                output_names=["encoding"],
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        os.replace(partial, path)


class OnnxEncoder:
    """Calls like `RemoteModel.encode` on one frame; exports (or reuses) the ONNX file."""

    def __init__(self, remote: RemoteModel, image_size: tuple[int, int], threads: int) -> None:
        path = cache_dir() / f"encoder-{encoder_key(remote, image_size)}.onnx"
        if not path.is_file():
            log.info("exporting the remote encoder to %s", path)
            export_encoder(remote, image_size, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Its threads would otherwise spin after each run, taking the cores from the PyTorch
        # part of the step and from an edge on the same machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        (encoding,) = self.session.run(None, {"frame": frame.contiguous().numpy()})
        return torch.from_numpy(encoding)
