"""ONNX Runtime sessions on the execution providers a user names, without PyTorch.

Both the full install (graphs it exports itself, `splitcast.models.onnx_program`) and the
edge-only install (an export folder, `splitcast.edge.exported`) open their sessions here, so a
provider is chosen, checked and reported the same way everywhere: one this onnxruntime build
lacks, or one that fails to start, is an error naming it, never a silent run on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

CACHE_ENV = "SPLITCAST_CACHE"

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
"""Execution providers by the short names the command line takes."""

Provider = str | tuple[str, dict[str, Any]]


class ProviderError(ValueError):
    """An execution provider asked for that this onnxruntime build does not have."""


def cache_dir() -> Path:
    """`$SPLITCAST_CACHE/onnx`, by default `~/.cache/splitcast/onnx`."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "splitcast"
    return Path(root) / "onnx"


def resolve_providers(names: Sequence[str]) -> list[Provider]:
    """ONNX Runtime providers for `names` in order of preference, each checked against this
    onnxruntime build, the CPU last for what the others leave; TensorRT caches its engines
    next to the exported graphs and may build them in fp16."""
    available = ort.get_available_providers()
    short = [name for name, full in PROVIDERS.items() if full in available]
    chosen: list[Provider] = []
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


def open_session(
    path: Path, threads: int | None, providers: Sequence[Provider] = (PROVIDERS["cpu"],)
) -> ort.InferenceSession:
    """A session for the graph at `path` on `threads` intra-op threads (None: ONNX Runtime's
    choice) with `providers` (from `resolve_providers`); raises ProviderError when the first
    of them did not start."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Its threads would otherwise spin after each run, taking the cores from other work in
    # the same process and from the other process (edge or server) on the machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=list(providers))
    preferred = providers[0] if isinstance(providers[0], str) else providers[0][0]
    if preferred not in session.get_providers():
        raise ProviderError(
            f"ONNX Runtime could not start {preferred} (it would run on "
            f"{', '.join(session.get_providers())}); its log above says why"
        )
    return session
