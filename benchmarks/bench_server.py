"""The server's step and the demo's use of its answers, side by side: the previous default
(PyTorch's default layout for the temporal model and heads), the default (channels-last) and
the default with `--compile`.

    .venv/bin/python benchmarks/bench_server.py [--rounds 2] [--frames 150] [--out out/bench-server]

First the step alone: one runtime per variant on `--server-threads` threads (2, as the demo's
server), taking turns frame by frame on the moving scene, so all see the same machine state.
Then `splitcast demo` (server, 100 ms link and edge on the two cores, in real time) once per
variant per round, the variants alternating within a round. Prints and writes bench.json: step
p50 per variant, and per demo run the fraction of frames that used an answer, the server's
answer time p50 (queue and step) and the mean age of the answers used.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from splitcast.cloud.runtime import RemoteRuntime
from splitcast.demo import run_demo
from splitcast.edge.sources import MovingSceneSource
from splitcast.models.checkpoint import load_system

VARIANTS = {
    "previous default": {"channels_last": False, "compile": False},
    "default": {"channels_last": True, "compile": False},
    "default --compile": {"channels_last": True, "compile": True},
}


def _flags(settings: dict[str, bool]) -> list[str]:
    flags = [] if settings["channels_last"] else ["--memory-format", "contiguous"]
    return flags + (["--compile"] if settings["compile"] else [])


def step_p50(model: str, frames: int, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    runtimes = {
        name: RemoteRuntime(load_system(model), **settings) for name, settings in VARIANTS.items()
    }
    for runtime in runtimes.values():
        runtime.warm_up()
    streams = {name: runtime.new_stream() for name, runtime in runtimes.items()}
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for sequence, rgb in enumerate(MovingSceneSource(num_frames=frames).frames()):
        for name, runtime in runtimes.items():
            start = time.perf_counter()
            runtime.step(streams[name], sequence, rgb, 3.0)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: round(float(np.median(values[5:])), 1) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--server-threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("out/bench-server"))
    args = parser.parse_args()
    report: dict = {
        "model": args.model,
        "step_p50_ms": step_p50(args.model, 60, args.server_threads),
    }
    print("server step p50 (ms), alone:", report["step_p50_ms"], flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for round_index in range(args.rounds):
        for name, settings in VARIANTS.items():
            folder = args.out / f"{name.replace(' ', '_')}-{round_index}"
            summary = run_demo(
                MovingSceneSource(num_frames=args.frames),
                folder,
                100.0,
                args.model,
                device="cpu",
                server_flags=_flags(settings),
            )
            run = {
                "answers_used": round(summary.combined_fraction, 3),
                "server_time_p50_ms": summary.server_time_p50_ms,
                "mean_d_o_frames": summary.mean_d_o_frames,
                "answers_received": summary.link.get("answers_received"),
            }
            runs[name].append(run)
            print(f"demo {name}, round {round_index + 1}: {run}", flush=True)
    report["demo"] = runs
    report["answers_used_mean"] = {
        name: round(float(np.mean([r["answers_used"] for r in values])), 3)
        for name, values in runs.items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("step_p50_ms", "answers_used_mean")}, indent=2))
    print(f"wrote {args.out / 'bench.json'}")


if __name__ == "__main__":
    main()
