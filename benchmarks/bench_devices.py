"""Speed on one device, written as JSON: training samples/s of `lite` and `paper`, the server
step at 1 and 8 streams, and the edge step in ONNX Runtime on each execution provider there.

    python benchmarks/bench_devices.py [--device cuda] [--out out/bench-devices.json] [--quick]

`make gpu-check` runs it on a GPU machine; on the CPU it runs too (`--quick`: `tiny` and fewer
steps), so the script itself is checked where there is no GPU. Training steps are whole
forward and backward passes of every network on random frames (no feature cache), with AdamW.
Server steps are the real runtime's (uplink-decoded frame in, encoded answer out); with 8
streams they take turns, as the server's stream tasks do today (one step at a time). Networks
have their configuration's shapes and random weights (speed does not depend on the weights,
and a GPU image then needs no packaged backbone weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from splitcast.cloud.runtime import warm_runtime
from splitcast.data.sampling import Batch
from splitcast.edge.runtime import LocalRuntime
from splitcast.edge.sources import MovingSceneSource
from splitcast.models.devices import autocast, moved, placement
from splitcast.models.losses import LOSSES, LossModel
from splitcast.models.providers import PROVIDERS
from splitcast.models.registry import build, get_config


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(step: Callable[[], object], device: torch.device, warm: int, timed: int) -> float:
    for _ in range(warm):
        step()
    times = []
    for _ in range(timed):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return round(float(np.median(times)), 2)


def _random_batch(name: str, batch_size: int) -> Batch:
    config = get_config(name)
    remote, local = config.remote_size, config.local_size
    return Batch(
        remote=torch.rand(batch_size, config.context_frames, 3, *remote),
        remote_now=torch.rand(batch_size, 3, *remote),
        local=torch.rand(batch_size, 3, *local),
        label=torch.randint(0, config.num_classes, (batch_size, *local)),
        delay=torch.rand(batch_size) * 5,
        clips=["random"] * batch_size,
        targets=list(range(batch_size)),
    )


def training(name: str, device: torch.device, precision: str, batch_size: int, steps: int) -> dict:
    model = LossModel(build(name, pretrained=False), dict.fromkeys(LOSSES, 1.0), 255)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = moved(_random_batch(name, batch_size), device)

    def step() -> None:
        with autocast(device, precision):
            loss, _ = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    ms = _median_ms(step, device, warm=2, timed=steps)
    return {
        "batch_size": batch_size,
        "step_ms": ms,
        "samples_per_s": round(batch_size * 1000 / ms, 2),
    }


def server(model: str, device: str, precision: str | None, streams: int, steps: int) -> dict:
    runtime = warm_runtime(build(model, pretrained=False), device=device, precision=precision)
    frames = list(MovingSceneSource(num_frames=steps + 4).frames())
    queues = [runtime.new_stream() for _ in range(streams)]
    times = []
    for sequence, frame in enumerate(frames):
        for stream in queues:
            start = time.perf_counter()
            runtime.step(stream, sequence, frame, 3.0)
            times.append((time.perf_counter() - start) * 1000.0)
    kept = times[4 * streams :]
    return {
        "streams": streams,
        "step_ms_p50": round(float(np.median(kept)), 2),
        "answers_per_s": round(1000.0 * len(kept) / sum(kept), 1),
    }


def edge(model: str, provider: str, steps: int) -> dict:
    system = build(model, pretrained=False)
    runtime = LocalRuntime(system, providers=(provider,))
    frames = list(MovingSceneSource(num_frames=steps + 2).frames())
    times = []
    for frame in frames:
        start = time.perf_counter()
        runtime.segment(frame, None)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"provider": provider, "step_ms_p50": round(float(np.median(times[2:])), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision")
    parser.add_argument("--model", default="lite", help="the server's and edge's configuration")
    parser.add_argument("--out", type=Path, default=Path("out/bench-devices.json"))
    parser.add_argument("--quick", action="store_true", help="tiny configuration, few steps")
    args = parser.parse_args()
    device, precision = placement(args.device, args.precision)
    steps = 3 if args.quick else 10
    configs = {"tiny": 2} if args.quick else {"lite": 8, "paper": 2}
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "precision": precision,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "training": {},
    }
    for name, batch_size in configs.items():
        results["training"][name] = training(name, device, precision, batch_size, steps)
        print(name, results["training"][name], flush=True)
    model = "tiny" if args.quick else args.model
    results["server"] = [
        server(model, str(device), precision, streams, steps) for streams in (1, 8)
    ]
    print("server", results["server"], flush=True)
    available = ort.get_available_providers()
    providers = [name for name, full in PROVIDERS.items() if full in available]
    results["edge"] = [edge(model, provider, steps * 3) for provider in providers]
    print("edge", results["edge"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
