"""Channels-last against PyTorch's default layout for the edge and server steps, side by side.

    .venv/bin/python benchmarks/bench_memory_format.py [--checkpoint NAME] [--frames N]

Two copies of the checkpoint, one per layout, take turns frame by frame on the built-in moving
scene, so both see the same machine state. The edge step runs on one torch thread, the server
step on `--server-threads` (2, as `splitcast demo` runs it). Prints p50 per step and layout,
the ratio, and whether the outputs agree (class ids; largest downlink difference).
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

LAYOUTS = {"default": False, "channels_last": True}


def _timed(step: Callable[..., np.ndarray], *args: object) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = step(*args)
    return (time.perf_counter() - start) * 1000.0, result


def _p50(values: list[float]) -> float:
    return round(float(np.median(values)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--server-threads", type=int, default=2)
    args = parser.parse_args()

    frames = list(open_source(MOVING_SCENE, max_frames=args.frames).frames())
    local = {}
    remote = {}
    for name, enabled in LAYOUTS.items():
        system = load_system(args.checkpoint)
        local[name] = LocalRuntime(system.local, system.config.local_size, channels_last=enabled)
        runtime = RemoteRuntime(system, channels_last=enabled)
        remote[name] = (runtime, runtime.new_stream())
    shape = local["default"].model.downlink_shape(local["default"].local_size)
    features = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))

    times: dict[str, dict[str, list[float]]] = {
        step: {name: [] for name in LAYOUTS} for step in ("edge_local", "edge_fused", "server")
    }
    outputs: dict[str, dict[str, list[np.ndarray]]] = {
        name: {"local": [], "fused": [], "downlink": []} for name in LAYOUTS
    }
    # Edge steps on one thread, then server steps on their threads; layouts alternate per frame.
    torch.set_num_threads(1)
    for index, rgb in enumerate(tqdm(frames, desc="edge steps", unit="frame")):
        for name in LAYOUTS:
            for step, downlink in (("edge_local", None), ("edge_fused", features)):
                ms, class_ids = _timed(local[name].segment, rgb, downlink)
                if index >= 2:  # the first calls pick kernels
                    times[step][name].append(ms)
                outputs[name][step.removeprefix("edge_")].append(class_ids)
    torch.set_num_threads(args.server_threads)
    for index, rgb in enumerate(tqdm(frames, desc="server steps", unit="frame")):
        for name in LAYOUTS:
            runtime, context = remote[name]
            ms, downlink = _timed(runtime.downlink, context, rgb, 3.0)
            if index >= 2:
                times["server"][name].append(ms)
            outputs[name]["downlink"].append(downlink)
    first, second = outputs["default"], outputs["channels_last"]
    ids_differ = sum(
        int(np.any(a != b))
        for kind in ("local", "fused")
        for a, b in zip(first[kind], second[kind], strict=True)
    )
    downlink_max_diff = max(
        float(np.abs(a - b).max())
        for a, b in zip(first["downlink"], second["downlink"], strict=True)
    )

    report = {
        "checkpoint": args.checkpoint,
        "frames": len(frames),
        "server_threads": args.server_threads,
        "p50_ms": {step: {n: _p50(v) for n, v in by.items()} for step, by in times.items()},
        "channels_last_over_default": {
            step: round(_p50(by["channels_last"]) / _p50(by["default"]), 3)
            for step, by in times.items()
        },
        "outputs_with_different_class_ids": ids_differ,
        "downlink_max_abs_difference": downlink_max_diff,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
