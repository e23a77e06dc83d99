"""What one server gives many edges, measured from the edges' side with `splitcast loadgen`.

    .venv/bin/python benchmarks/bench_serving.py [--duration 20] [--out out/bench-serving]

Against one `splitcast serve` process (the default checkpoint, two threads): a paced stream
alone and beside a flooding one, at 4, 12 (the rate of the issue's measurement) and 30 fps,
with the per-stream read limit on (the default) and off; then 1, 2, 4 and 8 paced streams at
12 fps against a server stepping frames one at a time and one batching up to 8
(10 ms wait); then 8 streams for `--long` seconds (default 60). Prints answers per second,
latency p50/p99 and errors side by side, the server's resident memory (at start, after 10 s
and at the end of the long run), and writes bench.json.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from splitcast.launch import start_server
from splitcast.loadgen import LoadOptions, run_load

BATCHING = {
    "one at a time": ["--max-batch", "1"],
    "batched": ["--max-batch", "8", "--max-wait-ms", "10"],
}


def _fairness(duration: float, limit: bool) -> dict[str, dict]:
    """The paced stream's answers per second alone and with a flooding stream beside it."""
    extra = [] if limit else ["--max-stream-fps", "0"]
    results = {}
    with start_server("default", extra=extra) as server:
        for fps in (4.0, 12.0, 30.0):
            alone = run_load(LoadOptions(server.address, streams=1, duration_s=duration, fps=fps))
            flooded = run_load(
                LoadOptions(server.address, streams=2, duration_s=duration, fps=fps, flood=1)
            )
            kept = flooded["paced"]["answers_per_s"] / alone["paced"]["answers_per_s"]
            results[f"{fps:g} fps"] = {
                "alone": alone["paced"],
                "beside_a_flood": flooded["paced"],
                "flood": flooded["flooding_streams"],
                "kept": round(kept, 3),
            }
    return results


def _streams(duration: float, extra: list[str]) -> tuple[dict[str, dict], dict[str, float]]:
    runs = {}
    with start_server("default", extra=extra) as server:
        memory = {"start_mb": round(server.rss_mb(), 1)}
        for streams in (1, 2, 4, 8):
            report = run_load(LoadOptions(server.address, streams, duration, fps=12.0))
            runs[str(streams)] = report["all"]
        memory["end_mb"] = round(server.rss_mb(), 1)
    return runs, memory


def _long_run(duration: float) -> dict:
    """8 paced streams at 12 fps for `duration` s: answers, latency, errors, and the server's
    resident memory at start, after 10 s and at the end."""
    with start_server("default") as server:
        memory = {"start_mb": round(server.rss_mb(), 1)}

        def sample() -> None:
            time.sleep(10.0)
            memory["after_10_s_mb"] = round(server.rss_mb(), 1)

        threading.Thread(target=sample, daemon=True).start()
        report = run_load(LoadOptions(server.address, streams=8, duration_s=duration, fps=12.0))
        memory["end_mb"] = round(server.rss_mb(), 1)
    return {"streams": report["all"], "server_rss": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--long", type=float, default=60.0, help="seconds of the 8-stream run")
    parser.add_argument("--out", type=Path, default=Path("out/bench-serving"))
    args = parser.parse_args()
    fairness = {
        "read limit on (default)": _fairness(args.duration, limit=True),
        "read limit off": _fairness(args.duration, limit=False),
    }
    streams, memory = {}, {}
    for name, extra in BATCHING.items():
        streams[name], memory[name] = _streams(args.duration, extra)
    print("paced stream beside a flooding one: answers/s alone -> beside (kept)")
    for setting, rates in fairness.items():
        for fps, run in rates.items():
            print(f"  {setting:24} {fps:>6}: {run['alone']['answers_per_s']:6.2f} -> "
                  f"{run['beside_a_flood']['answers_per_s']:6.2f} ({run['kept']:.0%}); "
                  f"flood got {run['flood']['answers_per_s']:.2f}/s")  # fmt: skip
    print("paced streams at 12 fps: streams, answers/s, latency p50, p99 (ms), errors")
    for name, runs in streams.items():
        for count, run in runs.items():
            errors = sum(run["errors"].values())
            print(f"  {name:16} {count:>2} {run['answers_per_s']:8.2f} "
                  f"{run['latency_p50_ms']:8} {run['latency_p99_ms']:8} {errors:4}")  # fmt: skip
        print(f"  {name:16} server RSS {memory[name]['start_mb']} MB at start, "
              f"{memory[name]['end_mb']} MB at the end")  # fmt: skip
    ratio = (
        streams["batched"]["8"]["answers_per_s"] / streams["one at a time"]["8"]["answers_per_s"]
    )
    print(f"8 streams, batched over one at a time: {ratio:.2f}x answers/s")
    long = _long_run(args.long)
    run, memory_long = long["streams"], long["server_rss"]
    print(f"8 streams x {args.long:g} s at 12 fps: {run['answers_per_s']} answers/s, latency "
          f"p50 {run['latency_p50_ms']} ms, p99 {run['latency_p99_ms']} ms, errors "
          f"{run['errors']}; server RSS {memory_long}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"fairness": fairness, "streams_at_12_fps": streams, "server_rss": memory}
    result["batched_over_one_at_a_time_at_8"] = round(ratio, 3)
    result["eight_streams_long"] = long
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
