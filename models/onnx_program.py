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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from splitcast.models.providers import PROVIDERS, Provider, ProviderError, cache_dir, open_session

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    module: nn.Module,
    examples: tuple[torch.Tensor, ...],
    input_names: list[str],
    path: Path,
    output_names: Sequence[str] = ("output",),
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
                output_names=list(output_names),
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
    except ProviderError:
        raise
    except Exception as exc:
        log.warning("%s could not run in ONNX Runtime (%s); using PyTorch", what, exc)
        return None


class OnnxProgram:
    """`module(*inputs)` at fixed input shapes, run by ONNX Runtime on `threads` threads with
    `providers` (from `resolve_providers`; default the CPU)."""

    def __init__(
        self,
        module: nn.Module,
        examples: tuple[torch.Tensor, ...],
        input_names: list[str],
        threads: int,
        providers: Sequence[Provider] = (PROVIDERS["cpu"],),
    ) -> None:
        self.input_names = input_names
        self.path = cache_dir() / f"{type(module).__name__}-{program_key(module, examples)}.onnx"
        if not self.path.is_file():
            log.info("exporting %s to %s", type(module).__name__, self.path)
            export_program(module, examples, input_names, self.path)
        self.session = open_session(self.path, threads, providers)
        self.providers: list[str] = self.session.get_providers()
        """The providers the session runs on."""

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {
            name: tensor.contiguous().numpy()
            for name, tensor in zip(self.input_names, inputs, strict=True)
        }
        (output,) = self.session.run(None, feed)
        return torch.from_numpy(output)
