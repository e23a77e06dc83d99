"""The runtimes' speed-ups measured side by side: the edge step in PyTorch (default layout,
channels-last) and in ONNX Runtime, and the server step with its per-frame encoder in PyTorch
and in ONNX Runtime.

    .venv/bin/python benchmarks/bench_runtimes.py [--checkpoint NAME] [--frames N]

Two copies of the checkpoint take turns frame by frame on the built-in moving scene, so both
see the same machine state. Edge steps run on one torch thread, then server steps on
`--server-threads` (2, as `splitcast demo` runs them). Prints p50 per step and variant, the
ratio, and whether the outputs agree (class ids; largest answer difference). The edge step
"with an answer" is whatever the checkpoint's combiner does with one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from splitcast.cloud.runtime import RemoteRuntime
from splitcast.edge.runtime import LocalRuntime
from splitcast.edge.sources import MOVING_SCENE, open_source
from splitcast.models.checkpoint import load_system

WARM_UP_FRAMES = 2
EDGE_VARIANTS = (
    ("torch_default_layout", "torch", False),
    ("torch_channels_last", "torch", True),
    ("onnxruntime", "onnxruntime", False),
)


def _timed(step: Callable[..., np.ndarray], *args: object) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = step(*args)
    return (time.perf_counter() - start) * 1000.0, result


def _side_by_side(
    frames: list[np.ndarray], variants: dict[str, Callable[[np.ndarray], np.ndarray]], label: str
) -> tuple[dict[str, list[float]], dict[str, list[np.ndarray]]]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    for index, rgb in enumerate(tqdm(frames, desc=label, unit="frame")):
        for name, step in variants.items():
            ms, output = _timed(step, rgb)
            if index >= WARM_UP_FRAMES:  # the first calls pick kernels
                times[name].append(ms)
            outputs[name].append(output)
    return times, outputs


def _summary(times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """p50 of every variant, and each one's ratio to the baseline's."""
    p50 = {name: round(float(np.median(values)), 2) for name, values in times.items()}
    ratios = {
        f"{name}_over_{baseline}": round(value / p50[baseline], 3)
        for name, value in p50.items()
        if name != baseline
    }
    return {**p50, **ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--server-threads", type=int, default=2)
    args = parser.parse_args()

    frames = list(open_source(MOVING_SCENE, max_frames=args.frames).frames())
    torch.set_num_threads(1)
    edges = {}
    for name, runtime, channels_last in EDGE_VARIANTS:
        system = load_system(args.checkpoint)
        combiner = system.combiner()
        edges[name] = LocalRuntime(system, runtime, channels_last)
    # An answer the server could have sent: random tensors of the combiner's shapes, as class
    # log-probabilities when that is what its codec carries.
    generator = torch.Generator().manual_seed(0)
    answer = {t.name: torch.randn(1, *t.shape, generator=generator) for t in combiner.wire()}
    if not combiner.fuses_features:
        answer = {name: tensor.log_softmax(1) for name, tensor in answer.items()}
    use = combiner.use_at(3.0)  # an answer 100 ms old
    for edge in edges.values():
        edge.segment(frames[0], None, sequence=0)  # the answer's frame, to measure motion from
    local_times, local_ids = _side_by_side(
        frames,
        {name: lambda rgb, e=edge: e.segment(rgb, None) for name, edge in edges.items()},
        "edge local-only",
    )
    fused_times, fused_ids = _side_by_side(
        frames,
        {
            name: lambda rgb, e=edge: e.segment(rgb, answer, None, use, 1, 0)
            for name, edge in edges.items()
        },
        "edge with an answer",
    )

    torch.set_num_threads(args.server_threads)
    servers = {}
    for encoder in ("torch", "onnxruntime"):
        runtime = RemoteRuntime(load_system(args.checkpoint), encoder=encoder)
        servers[encoder] = (runtime, runtime.new_stream())
    server_times, downlinks = _side_by_side(
        frames,
        {
            name: lambda rgb, r=runtime, c=context: r.answer(c, 0, rgb, 3.0)[0]
            for name, (runtime, context) in servers.items()
        },
        "server step",
    )

    differ = {
        name: sum(
            int(np.any(a != b))
            for ids in (local_ids, fused_ids)
            for a, b in zip(ids["torch_default_layout"], ids[name], strict=True)
        )
        for name in ("torch_channels_last", "onnxruntime")
    }
    report = {
        "checkpoint": args.checkpoint,
        "frames": len(frames),
        "server_threads": args.server_threads,
        "edge_local_p50_ms": _summary(local_times, "torch_default_layout"),
        "edge_with_answer_p50_ms": _summary(fused_times, "torch_default_layout"),
        "edge_outputs_with_class_ids_unlike_torch_default_layout": differ,
        "server_step_p50_ms": _summary(server_times, "torch"),
        "answer_max_abs_difference": max(
            float((a[name] - b[name]).abs().max())
            for a, b in zip(downlinks["torch"], downlinks["onnxruntime"], strict=True)
            for name in a
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
