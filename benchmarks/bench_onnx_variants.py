"""What ONNX Runtime and int8 would give the CPU path, measured against what ships.

    .venv/bin/python benchmarks/bench_onnx_variants.py [--every 3] [--out out/bench-onnx.json]

1. The server's answer step (temporal model + heads, after the per-frame encoder): PyTorch,
   the same exported to ONNX Runtime, and PyTorch through torch.compile, on 2 threads.
2. int8 in ONNX Runtime (static QDQ, per channel, calibrated on frames of the `calib` split;
   and dynamic for the encoder) against fp32, for the remote's per-frame encoder (2 threads)
   and the local model (1 thread, as the edge), each pair taking turns frame by frame.
3. The cost in accuracy: mIoU at d = 3 on the validation split (every `--every`-th target) with
   the encoder, then the local model, swapped for its int8 graph; the baseline runs both fp32
   graphs, so the three rows differ in the swapped part only.

Needs `splitcast data build --split calib` and `--split val` in out/data (the default paths).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from splitcast.cloud.onnx_encoder import onnx_encoder
from splitcast.cloud.runtime import RemoteRuntime
from splitcast.data.clips import open_clips
from splitcast.data.images import fit
from splitcast.edge.runtime import local_runner
from splitcast.edge.sources import MovingSceneSource
from splitcast.export import AnswerGraph
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import get_codec
from splitcast.models.edge_step import to_tensor
from splitcast.models.evaluation import OfflineEvaluator
from splitcast.models.onnx_program import export_program, program_key
from splitcast.models.providers import cache_dir
from splitcast.models.registry import SplitSystem

WARM = 3


def _p50(calls: dict[str, Callable[[int], object]], steps: int) -> dict[str, float]:
    """Median ms of each call, the calls taking turns step by step."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for step in range(steps + WARM):
        for name, call in calls.items():
            start = time.perf_counter()
            call(step)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: round(float(np.median(values[WARM:])), 2) for name, values in times.items()}


@torch.inference_mode()
def answer_step(model: str, frames: list[np.ndarray]) -> dict[str, Any]:
    torch.set_num_threads(2)
    runtime = RemoteRuntime(load_system(model))
    stream = runtime.new_stream()
    for sequence, rgb in enumerate(frames[: runtime.config.context_frames]):
        pixels = to_tensor(fit(rgb, runtime.config.remote_size)).unsqueeze(0)
        _, context = stream.push(sequence, runtime.encode(pixels))
    context = context.contiguous(memory_format=runtime.context_layout)
    delay = torch.tensor([3.0])
    module = AnswerGraph(runtime.system, runtime.combiner)
    names = [tensor.name for tensor in runtime.combiner.wire()]
    path = cache_dir() / "bench" / f"answer-{program_key(module, (context, delay))}.onnx"
    if not path.is_file():
        export_program(module, (context, delay), ["context", "delay"], path, names)
    graph = _session(path, 2)
    feed = {"context": context.numpy(), "delay": delay.numpy()}
    compiled = torch.compile(runtime.combiner.answer, dynamic=False)
    reference = module(context, delay)
    difference = max(
        float(np.abs(got - expected.numpy()).max())
        for got, expected in zip(graph.run(None, feed), reference, strict=True)
    )
    return {
        "p50_ms": _p50(
            {
                "pytorch": lambda _: runtime.combiner.answer(context, delay),
                "onnxruntime": lambda _: graph.run(None, feed),
                "pytorch_compiled": lambda _: compiled(context, delay),
            },
            20,
        ),
        "onnxruntime_max_abs_difference": difference,
    }


class _Frames(CalibrationDataReader):
    def __init__(self, name: str, arrays: list[np.ndarray]) -> None:
        self.feeds = iter([{name: array} for array in arrays])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _inputs(rgbs: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    return [to_tensor(fit(rgb, size)).unsqueeze(0).numpy() for rgb in rgbs]


def int8_graphs(system: SplitSystem, calibration: list[np.ndarray]) -> dict[str, Path]:
    """fp32 and int8 graphs of the encoder and the local model, written once."""
    config = system.config
    encoder = onnx_encoder(system.remote, config.remote_size, 2).path
    local = local_runner(system.local, config.local_size, system.combiner()).local_only.path
    folder = cache_dir() / "int8"
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {"encoder": encoder, "local": local}
    for name, source, size in (
        ("encoder", encoder, config.remote_size),
        ("local", local, config.local_size),
    ):
        graphs[f"{name}_int8"] = folder / f"{source.stem}-static.onnx"
        if not graphs[f"{name}_int8"].is_file():
            quantize_static(
                str(source),
                str(graphs[f"{name}_int8"]),
                _Frames("frame", _inputs(calibration, size)),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
            )
    graphs["encoder_int8_dynamic"] = folder / f"{encoder.stem}-dynamic.onnx"
    if not graphs["encoder_int8_dynamic"].is_file():
        quantize_dynamic(
            str(encoder), str(graphs["encoder_int8_dynamic"]), weight_type=QuantType.QInt8
        )
    return graphs


def int8_speed(system: SplitSystem, graphs: dict[str, Path], frames: list[np.ndarray]) -> dict:
    config = system.config
    results = {}
    for part, size, threads, variants in (
        ("encoder", config.remote_size, 2, ("encoder", "encoder_int8", "encoder_int8_dynamic")),
        ("local", config.local_size, 1, ("local", "local_int8")),
    ):
        inputs = _inputs(frames, size)
        sessions = {name: _session(graphs[name], threads) for name in variants}
        results[part] = _p50(
            {
                name: lambda step, s=session, x=inputs: s.run(None, {"frame": x[step % len(x)]})
                for name, session in sessions.items()
            },
            len(inputs),
        )
    return results


def int8_accuracy(model: str, graphs: dict[str, Path], every: int) -> dict[str, dict]:
    rows = {}
    for row, swapped in (("fp32", None), ("encoder_int8", "encoder"), ("local_int8", "local")):
        system = load_system(model)
        config = system.config
        encoder = _session(graphs["encoder_int8" if swapped == "encoder" else "encoder"], 2)

        def encode(frames: torch.Tensor, session: ort.InferenceSession = encoder) -> torch.Tensor:
            return torch.cat(
                [torch.from_numpy(session.run(None, {"frame": f[None].numpy()})[0]) for f in frames]
            )

        system.remote.encode = encode
        local = local_runner(system.local, config.local_size, system.combiner())
        if swapped == "local":
            local.local_only.session = _session(graphs["local_int8"], 1)
        evaluator = OfflineEvaluator(
            system,
            open_clips("out/data/val"),
            batch_size=1,
            codec=get_codec(config.codec, system.bottleneck),
            local=local,
        )
        scores = evaluator.run([3.0], every=every, progress=False)
        rows[row] = {
            "targets": scores["targets"],
            "dedelayed": scores["miou"]["dedelayed"][0],
            "local_only": scores["miou"]["local_only"][0],
        }
        print(row, rows[row], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("out/bench-onnx.json"))
    args = parser.parse_args()
    frames = list(MovingSceneSource(num_frames=30).frames())
    report: dict[str, Any] = {"answer_step": answer_step(args.model, frames)}
    print("answer step", report["answer_step"], flush=True)
    calib = open_clips("out/data/calib")
    calibration = [clip.frame(i) for clip in calib.clips[:8] for i in (0, 12, 24, 36)]
    system = load_system(args.model)
    graphs = int8_graphs(system, calibration)
    report["int8_p50_ms"] = int8_speed(system, graphs, frames)
    print("int8 speed", report["int8_p50_ms"], flush=True)
    report["int8_miou_d3"] = int8_accuracy(args.model, graphs, args.every)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
