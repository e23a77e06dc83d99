"""A module exported to ONNX once per weights and run by ONNX Runtime.

On a CPU ONNX Runtime runs our convolutional parts faster than PyTorch eager, since it fuses
each convolution with its normalisation and activation (`benchmarks/bench_runtimes.py`
measures it). Exports (the dynamo exporter takes seconds) are cached under
`$SPLITCAST_CACHE/onnx` (default `~/.cache/splitcast/onnx`), keyed by the weights, the input
shapes and the torch version, so a process exports a checkpoint's graph once and only loads it
after that.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import onnxruntime as ort
import torch
from torch import nn

log = logging.getLogger(__name__)

CACHE_ENV = "SPLITCAST_CACHE"

T = TypeVar("T")


def cache_dir() -> Path:
    """`$SPLITCAST_CACHE/onnx`, by default `~/.cache/splitcast/onnx`."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "splitcast"
    return Path(root) / "onnx"


def _defining_files(module: nn.Module) -> list[Path]:
    """The source files of every class in `module`'s tree (ours, timm's, torch's)."""
    files = set()
    for part in module.modules():
        try:
            files.add(Path(inspect.getfile(type(part))))
        except TypeError:  # built-in classes have no source file
            continue
    return sorted(path for path in files if path.is_file())


def program_key(module: nn.Module, examples: tuple[torch.Tensor, ...]) -> str:
    """Changes whenever the exported graph would: weights, input shapes, torch version, the
    layers' hyper-parameters (`repr`) and the code that defines them, so upgrading splitcast
    or timm never reuses a graph traced from older code."""
    shapes = [tuple(example.shape) for example in examples]
    digest = hashlib.sha256(
        f"{type(module).__name__}|{shapes}|{torch.__version__}|{module!r}".encode()
    )
    for path in _defining_files(module):
        digest.update(path.read_bytes())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_program(
    module: nn.Module, examples: tuple[torch.Tensor, ...], input_names: list[str], path: Path
) -> None:
    """Write `module` at the examples' shapes as one self-contained ONNX file; it appears
    complete or not at all (processes may export the same graph at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        partial = Path(scratch) / path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                examples,
                str(partial),
                input_names=input_names,
                output_names=["output"],
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        os.replace(partial, path)


def onnx_or_none(make: Callable[[], T], what: str) -> T | None:
    """`make()`, or None with a warning when exporting or loading fails (the exporter fails in
    many ways on unusual architectures): callers then run `what` in PyTorch."""
    try:
        return make()
    except Exception as exc:
        log.warning("%s could not run in ONNX Runtime (%s); using PyTorch", what, exc)
        return None


class OnnxProgram:
    """`module(*inputs)` at fixed input shapes, run by ONNX Runtime on `threads` threads."""

    def __init__(
        self,
        module: nn.Module,
        examples: tuple[torch.Tensor, ...],
        input_names: list[str],
        threads: int,
    ) -> None:
        self.input_names = input_names
        self.path = cache_dir() / f"{type(module).__name__}-{program_key(module, examples)}.onnx"
        if not self.path.is_file():
            log.info("exporting %s to %s", type(module).__name__, self.path)
            export_program(module, examples, input_names, self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Its threads would otherwise spin after each run, taking the cores from PyTorch work
        # in the same process and from the other process (edge or server) on the machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {
            name: tensor.contiguous().numpy()
            for name, tensor in zip(self.input_names, inputs, strict=True)
        }
        (output,) = self.session.run(None, feed)
        return torch.from_numpy(output)
