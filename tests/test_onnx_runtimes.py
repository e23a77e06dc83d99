"""ONNX Runtime on both sides: the server's per-frame encoder gives the same downlink as
PyTorch and is exported once; the edge's local model gives the same class ids."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from splitcast.cloud.runtime import RemoteRuntime
from splitcast.edge.runtime import LocalRuntime
from splitcast.models.onnx_program import OnnxProgram, program_key
from splitcast.models.providers import cache_dir
from splitcast.models.registry import SplitSystem, build, get_config


def _tiny() -> SplitSystem:
    return build(get_config("tiny"))


def test_onnx_encoder_gives_the_torch_downlink_and_is_exported_once() -> None:
    onnx_runtime = RemoteRuntime(_tiny(), encoder="onnxruntime")
    torch_runtime = RemoteRuntime(_tiny(), encoder="torch")
    assert isinstance(onnx_runtime.encode, OnnxProgram)
    exported = onnx_runtime.encode.path
    assert exported.parent == cache_dir() and exported.is_file()
    stamp = exported.stat().st_mtime_ns

    rng = np.random.default_rng(0)
    height, width = onnx_runtime.config.remote_size
    streams = (onnx_runtime.new_stream(), torch_runtime.new_stream())
    for sequence in range(3):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        via_onnx = onnx_runtime.answer(streams[0], sequence, rgb, 2.0)[0]["features"].numpy()
        via_torch = torch_runtime.answer(streams[1], sequence, rgb, 2.0)[0]["features"].numpy()
        scale = float(np.abs(via_torch).max())
        assert scale > 0
        assert float(np.abs(via_onnx - via_torch).max()) <= 1e-4 * max(1.0, scale)

    again = RemoteRuntime(_tiny(), encoder="onnxruntime")
    assert isinstance(again.encode, OnnxProgram) and again.encode.path == exported
    assert exported.stat().st_mtime_ns == stamp, "same weights: the cached file is reused"


def test_other_weights_get_their_own_export() -> None:
    first = RemoteRuntime(_tiny(), encoder="onnxruntime").encode
    changed = _tiny()
    with torch.no_grad():
        next(changed.remote.neck.parameters()).add_(0.1)
    second = RemoteRuntime(changed, encoder="onnxruntime").encode
    assert isinstance(first, OnnxProgram) and isinstance(second, OnnxProgram)
    assert first.path != second.path


def test_an_unknown_encoder_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="openvino"):
        RemoteRuntime(_tiny(), encoder="openvino")


def test_edge_onnx_runtime_segments_like_torch_with_and_without_features() -> None:
    system = _tiny()
    onnx_runtime = LocalRuntime(system, runtime="onnxruntime")
    torch_runtime = LocalRuntime(_tiny(), runtime="torch")
    shape = system.local.downlink_shape(system.config.local_size)
    rng = np.random.default_rng(1)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        rgb = rng.integers(0, 256, (200, 400, 3), dtype=np.uint8)
        features = torch.randn(1, *shape, generator=generator).half()
        for downlink in (None, {"features": features}):
            via_onnx = onnx_runtime.segment(rgb, downlink, output_size=(100, 200))
            via_torch = torch_runtime.segment(rgb, downlink, output_size=(100, 200))
            assert via_onnx.shape == (100, 200)
            assert float(np.mean(via_onnx == via_torch)) >= 0.999


def _load_layer(path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> nn.Module:
    """A one-weight layer defined by `source`, imported from `path` as module `scaled_layer`."""
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("scaled_layer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "scaled_layer", module)
    spec.loader.exec_module(module)
    return module.Scale()


def test_the_export_key_follows_the_code_and_hyper_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph traced from older code or other layer settings is never reused."""
    examples = (torch.zeros(1, 1, 8, 8),)
    layer = (
        "import torch\n"
        "class Scale(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.weight = torch.nn.Parameter(torch.ones(1))\n"
        "    def forward(self, x):\n"
        "        return x * self.weight{}\n"
    )
    path = tmp_path / "scaled_layer.py"
    before = program_key(_load_layer(path, layer.format(""), monkeypatch), examples)
    same = program_key(_load_layer(path, layer.format(""), monkeypatch), examples)
    edited = program_key(_load_layer(path, layer.format(" + 1"), monkeypatch), examples)
    assert before == same
    assert edited != before

    torch.manual_seed(0)
    stride_one = nn.Conv2d(1, 1, 3, stride=1)
    stride_two = nn.Conv2d(1, 1, 3, stride=2)
    stride_two.load_state_dict(stride_one.state_dict())
    assert program_key(stride_one, examples) != program_key(stride_two, examples)
