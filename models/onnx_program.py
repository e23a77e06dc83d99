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
from typing import Any, TypeVar

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


PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
"""Execution providers by the short names the command line takes."""


class ProviderError(ValueError):
    """An execution provider asked for that this onnxruntime build does not have."""


def resolve_providers(names: Sequence[str]) -> list[str | tuple[str, dict[str, Any]]]:
    """ONNX Runtime providers for `names` in order of preference, each checked against this
    onnxruntime build, the CPU last for what the others leave; TensorRT caches its engines
    next to the exported graphs and may build them in fp16."""
    available = ort.get_available_providers()
    short = [name for name, full in PROVIDERS.items() if full in available]
    chosen: list[str | tuple[str, dict[str, Any]]] = []
    for name in names:
        if name not in PROVIDERS:
            raise ProviderError(f"unknown provider {name!r}; choose from {', '.join(PROVIDERS)}")
        if PROVIDERS[name] not in available:
            raise ProviderError(
                f"ONNX Runtime provider {name!r} is not in this onnxruntime build "
                f"(onnxruntime {ort.__version__}; available: {', '.join(short)}); on a GPU "
                "install onnxruntime-gpu (on a Jetson, JetPack's wheel)"
            )
        if name == "tensorrt":
            cache = str(cache_dir() / "tensorrt")
            options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache}
            chosen.append((PROVIDERS[name], options | {"trt_fp16_enable": True}))
        else:
            chosen.append(PROVIDERS[name])
    if PROVIDERS["cpu"] not in chosen:
        chosen.append(PROVIDERS["cpu"])
    return chosen


class OnnxProgram:
    """`module(*inputs)` at fixed input shapes, run by ONNX Runtime on `threads` threads with
    `providers` (from `resolve_providers`; default the CPU)."""

    def __init__(
        self,
        module: nn.Module,
        examples: tuple[torch.Tensor, ...],
        input_names: list[str],
        threads: int,
        providers: Sequence[str | tuple[str, dict[str, Any]]] = (PROVIDERS["cpu"],),
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
        self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        self.providers: list[str] = self.session.get_providers()
        """The providers the session runs on (ONNX Runtime drops one that fails to start)."""
        preferred = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if preferred not in self.providers:
            raise ProviderError(
                f"ONNX Runtime could not start {preferred} (it would run on "
                f"{', '.join(self.providers)}); its log above says why"
            )

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {
            name: tensor.contiguous().numpy()
            for name, tensor in zip(self.input_names, inputs, strict=True)
        }
        (output,) = self.session.run(None, feed)
        return torch.from_numpy(output)
