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
    ids_differ = 0
    downlink_max_diff = 0.0
    for index, rgb in enumerate(tqdm(frames, desc="frames", unit="frame")):
        outputs: dict[str, dict[str, np.ndarray]] = {}
        for name in LAYOUTS:
            torch.set_num_threads(1)
            ms_local, local_ids = _timed(local[name].segment, rgb, None)
            ms_fused, fused_ids = _timed(local[name].segment, rgb, features)
            torch.set_num_threads(args.server_threads)
            runtime, context = remote[name]
            ms_server, downlink = _timed(runtime.downlink, context, rgb, 3.0)
            if index >= 2:  # the first calls pick kernels
                times["edge_local"][name].append(ms_local)
                times["edge_fused"][name].append(ms_fused)
                times["server"][name].append(ms_server)
            outputs[name] = {"local": local_ids, "fused": fused_ids, "downlink": downlink}
        first, second = outputs["default"], outputs["channels_last"]
        ids_differ += int(np.any(first["local"] != second["local"]))
        ids_differ += int(np.any(first["fused"] != second["fused"]))
        downlink_max_diff = max(
            downlink_max_diff, float(np.abs(first["downlink"] - second["downlink"]).max())
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
