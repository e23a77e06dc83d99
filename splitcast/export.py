"""`splitcast export`: a checkpoint as fixed-shape ONNX graphs and a manifest, for runtimes that
are not splitcast (TensorRT, another team's pipeline) and for an edge without PyTorch.

The folder holds the edge's graphs (the local model alone; for feature fusion the local model
fused with the answer's features at a gain, and the learned codec's synthesis when it sends
with it; for the late average its combine step, one graph per distinct record of the per-age
policy), the server's (the per-frame encoder; the temporal model
with the heads that make an answer) and `manifest.json`: every graph's file, sha256, inputs and
outputs (names, shapes, dtypes), how frames are normalised, the uplink encoding, the combiner,
the answer tensors and their codecs (the learned codec's integer tables), the per-age policy,
fps, K, the opset and the checkpoint's version; `splitcast.edge.exported` runs the edge from
it without PyTorch. Every graph passes onnx's checker and is run once in ONNX Runtime against
PyTorch on random inputs; the largest difference is recorded and over `TOLERANCE` is an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from splitcast.cloud.onnx_encoder import RemoteEncoder
from splitcast.edge.exported import EXPORT_FORMAT, EXPORT_VERSION, MANIFEST
from splitcast.files import write_json
from splitcast.models.answers import AS_SENT, AnswerUse
from splitcast.models.checkpoint import load_system
from splitcast.models.combiners import Combiner, pool
from splitcast.models.onnx_program import export_program
from splitcast.models.registry import SplitSystem

TOLERANCE = 1e-3
NORMALISATION = (
    "RGB, float32 in [0, 1], NCHW; the frame resized to the graph's input size keeping its "
    "aspect ratio and centre-cropped (splitcast.data.images.fit)"
)


class _Fused(nn.Module):
    """Feature fusion's edge step: the local model fed the answer's features times the gain."""

    def __init__(self, system: SplitSystem) -> None:
        super().__init__()
        self.local = system.local

    def forward(
        self, frame: torch.Tensor, features: torch.Tensor, gain: torch.Tensor
    ) -> torch.Tensor:
        return self.local(frame, features * gain)


class _Synthesis(nn.Module):
    """The learned codec's synthesis: features from the range decoder's integer symbols."""

    def __init__(self, system: SplitSystem) -> None:
        super().__init__()
        self.bottleneck = system.bottleneck

    def forward(self, symbols: torch.Tensor) -> torch.Tensor:
        return self.bottleneck.reconstruct(symbols)


class _LateCombine(nn.Module):
    """The late average's combine step for one record of its per-age policy (the record's
    numbers are part of the graph): the local logits pooled with the forecast and with the
    on-time answer moved along the measured flow (zeros: not moved)."""

    def __init__(self, use: AnswerUse) -> None:
        super().__init__()
        self.use = use

    def forward(
        self,
        local_logits: torch.Tensor,
        forecast: torch.Tensor,
        on_time: torch.Tensor,
        flow: torch.Tensor,
    ) -> torch.Tensor:
        return pool(local_logits, forecast, on_time, self.use, flow)


class AnswerGraph(nn.Module):
    """The server's answer for a context of K encodings, one output per answer tensor."""

    def __init__(self, system: SplitSystem, combiner: Combiner) -> None:
        super().__init__()
        self.remote = system.remote
        self.combiner = combiner

    def forward(self, context: torch.Tensor, delay: torch.Tensor) -> tuple[torch.Tensor, ...]:
        answer = self.combiner.answer(context, delay)[0]
        return tuple(answer[tensor.name] for tensor in self.combiner.wire())


def _graphs(system: SplitSystem) -> dict[str, tuple[nn.Module, tuple, list[str], list[str]]]:
    """Each graph's module, example inputs, input names and output names."""
    config = system.config
    combiner = system.combiner()
    generator = torch.Generator().manual_seed(0)
    frame = torch.rand(1, 3, *config.local_size, generator=generator)
    remote_frame = torch.rand(1, 3, *config.remote_size, generator=generator)
    encoding = system.remote.encode(remote_frame)
    context = torch.stack([encoding] * config.context_frames, 2)
    context = context + 0.1 * torch.randn(context.shape, generator=generator)
    delay = torch.tensor([3.0])
    answer = combiner.answer(context, delay)[0]
    graphs = {
        "edge_local": (system.local, (frame,), ["frame"], ["logits"]),
        "remote_encoder": (RemoteEncoder(system.remote), (remote_frame,), ["frame"], ["encoding"]),
        "remote_answer": (
            AnswerGraph(system, combiner),
            (context, delay),
            ["context", "delay"],
            [tensor.name for tensor in combiner.wire()],
        ),
    }
    if any(tensor.codec == "learned" for tensor in combiner.wire()):
        symbols = system.bottleneck.symbols(answer["features"])
        graphs["edge_synthesis"] = (
            _Synthesis(system),
            (symbols,),
            ["symbols"],
            ["features"],
        )
    if combiner.fuses_features:
        gain = torch.tensor(0.8)
        graphs["edge_fused"] = (
            _Fused(system),
            (frame, answer["features"], gain),
            ["frame", "features", "gain"],
            ["logits"],
        )
        return graphs
    logits = system.local(frame)
    flow = 2.0 * torch.randn(1, *config.local_size, 2, generator=generator)
    for index, use in enumerate(_records(combiner)):
        graphs[f"edge_combine_{index}"] = (
            _LateCombine(use),
            (logits, answer["forecast"], answer["on_time"], flow),
            ["local_logits", "forecast", "on_time", "flow"],
            ["scores"],
        )
    return graphs


def _records(combiner: Combiner) -> list[AnswerUse]:
    """The policy's distinct records in order of first age (as sent, without a policy)."""
    return list(dict.fromkeys(combiner.policy or (AS_SENT,)))


def _reference(module: nn.Module, examples: tuple) -> list[np.ndarray]:
    outputs = module(*examples)
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return [output.detach().numpy() for output in outputs]


def _values(values: list[onnx.ValueInfoProto]) -> list[dict[str, Any]]:
    described = []
    for value in values:
        tensor = value.type.tensor_type
        described.append(
            {
                "name": value.name,
                "shape": [dim.dim_value for dim in tensor.shape.dim],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            }
        )
    return described


def export_checkpoint_graphs(checkpoint: str, out: Path) -> dict[str, Any]:
    """Write every graph and `manifest.json` into `out`; returns the manifest."""
    system = load_system(checkpoint).eval()
    config = system.config
    combiner = system.combiner()
    out.mkdir(parents=True, exist_ok=True)
    described: dict[str, Any] = {}
    opset = None
    with torch.inference_mode():
        graphs = _graphs(system)
    for name, (module, examples, inputs, outputs) in graphs.items():
        path = out / f"{name}.onnx"
        export_program(module.eval(), examples, inputs, path, outputs)
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        opset = max(
            entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        kept = {value.name for value in session.get_inputs()}  # an unused input is dropped
        feed = {
            key: value.numpy() for key, value in zip(inputs, examples, strict=True) if key in kept
        }
        with torch.inference_mode():
            expected = _reference(module, examples)
        got = session.run(None, feed)
        difference = max(float(np.abs(a - b).max()) for a, b in zip(got, expected, strict=True))
        if difference > TOLERANCE:
            raise ValueError(f"{name}: ONNX Runtime differs from PyTorch by {difference:.2e}")
        described[name] = {
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "inputs": _values(list(model.graph.input)),
            "outputs": _values(list(model.graph.output)),
            "max_abs_difference_from_pytorch": difference,
        }
    manifest = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "checkpoint": {"name": checkpoint, "version": config.version, "config": config.name},
        "combiner": combiner.name,
        "fps": config.fps,
        "context_frames": config.context_frames,
        "classes": config.num_classes,
        "local_size": list(config.local_size),
        "remote_size": list(config.remote_size),
        "normalisation": NORMALISATION,
        "uplink": {"format": config.uplink_format, "quality": config.uplink_quality},
        "answer": [
            {"name": t.name, "shape": list(t.shape), "codec": t.codec} for t in combiner.wire()
        ],
        "horizon_ticks": config.horizon_ticks,
        "policy": [_policy_entry(combiner, use) for use in combiner.policy or (AS_SENT,)],
        "opset": opset,
        "graphs": described,
    }
    if any(tensor.codec == "learned" for tensor in combiner.wire()):
        tables = system.bottleneck.tables.tolist()
        manifest["learned_codec"] = {"tables": tables, "graph": "edge_synthesis"}
    write_json(out / MANIFEST, manifest)
    return manifest


def _policy_entry(combiner: Combiner, use: AnswerUse) -> dict[str, Any]:
    """One age's record; for the late average with the combine graph that applies it."""
    entry: dict[str, Any] = asdict(use)
    if not combiner.fuses_features:
        entry["graph"] = f"edge_combine_{_records(combiner).index(use)}"
    return entry
