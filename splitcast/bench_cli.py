"""`splitcast bench`'s command line: the table it prints, bench.json and the waterfall PNG
(the measuring is `splitcast.bench`, imported when run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from splitcast.arguments import add_model_argument, positive_float, positive_int

COLOURS = {"edge": "tab:green", "network": "tab:blue", "server": "tab:red"}


def add_bench_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench",
        help="where one frame's time goes: server, link and edge on loopback",
        description="Time the edge step alone (PyTorch, ONNX Runtime, the export folder; "
        "local-only and with a real answer), then run a real server and the edge on loopback, "
        "straight and through a link adding --rtt-ms, and trace every used answer's trip from "
        "capture to output. Prints a table; writes bench.json, waterfall.png and the two runs' "
        "videos into --out.",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--export",
        type=Path,
        help="the checkpoint's export folder (default: exported into --out/export first)",
    )
    parser.add_argument(
        "--frames", type=positive_int, default=150, help="frames per live run (default: 150)"
    )
    parser.add_argument(
        "--fps", type=positive_float, default=30.0, help="source frame rate (default: 30)"
    )
    parser.add_argument(
        "--rtt-ms",
        type=positive_float,
        default=100.0,
        help="round trip the link adds in the second run (default: 100)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=40,
        help="frames the edge step alone is timed on, per runtime (default: 40)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out/bench"), help="output folder (default: out/bench)"
    )
    parser.set_defaults(run=_run_bench)


def _run_bench(args: argparse.Namespace) -> None:
    from splitcast.bench import BenchOptions, run_bench
    from splitcast.files import write_json

    args.out.mkdir(parents=True, exist_ok=True)
    options = BenchOptions(
        checkpoint=args.model,
        export=args.export,
        frames=args.frames,
        fps=args.fps,
        rtt_ms=args.rtt_ms,
        steps=args.steps,
        out=args.out,
    )
    result = run_bench(options)
    write_json(args.out / "bench.json", result)
    plot_waterfall(result, args.out / "waterfall.png")
    print(format_bench(result))
    print(f"wrote {args.out / 'bench.json'}, {args.out / 'waterfall.png'}")


def format_bench(result: dict[str, Any]) -> str:
    """The printed table: the edge step per runtime, every stage of the trip in both runs,
    the overhead per frame, the link's setting against what was measured, and the goals."""
    lines = ["edge step (ms, p50)          local-only  with answer  ratio  ids = first"]
    for name, run in result["edge_step"].items():
        lines.append(
            f"  {name:28}{run['local_only_ms_p50']:>8.2f}{run['with_answer_ms_p50']:>13.2f}"
            f"{run['with_answer_over_local_only']:>7.3f}{run['ids_equal_to_first']:>12.4f}"
        )
    loopback, link = result["loopback"], result["link"]
    lines.append(f"\none frame's trip (ms, p50)     loopback  link {result['rtt_ms']:g} ms RTT")
    for stage, value in loopback["stage_ms_p50"].items():
        lines.append(f"  {stage:28}{value:>8.2f}{link['stage_ms_p50'][stage]:>12.2f}")
    lines.append(f"  {'total':28}{loopback['trip_ms_p50']:>8.2f}{link['trip_ms_p50']:>12.2f}")
    for name in ("combined_fraction", "answers_traced", "skipped"):
        lines.append(f"  {name:28}{loopback[name]:>8}{link[name]:>12}")
    overhead, network = result["overhead_per_frame_on_loopback"], result["network"]
    lines.append("\nper frame on loopback, no link (ms, p50)")
    lines += [f"  {name:44}{value:>7.3f}" for name, value in overhead.items()]
    lines.append(f"link: {network['link_setting_one_way_ms']:g} ms each way set; measured "
                 f"uplink {network['uplink_measured_ms']:.1f} ms, "
                 f"downlink {network['downlink_measured_ms']:.1f} ms")  # fmt: skip
    goals = result["goals"]
    ratios = goals["edge_step_with_answer_over_local_only"]["reached"]
    lines.append(
        "goals: edge step with an answer <= 1.05x local-only: "
        + ", ".join(f"{name} {ratio:.3f}" for name, ratio in ratios.items())
        + f"; gRPC + serialisation + codec <= 1 ms: "
        f"{goals['grpc_serialisation_and_codec_ms']['reached']:.3f} ms"
    )
    return "\n".join(lines)


def plot_waterfall(result: dict[str, Any], path: Path) -> None:
    """One row per stage, each bar starting where the one before ended, for both runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from splitcast.bench import STAGES

    link = f"link, {result['rtt_ms']:g} ms RTT"
    runs = [("loopback", result["loopback"]), (link, result["link"])]
    figure, axes = plt.subplots(len(runs), 1, figsize=(10, 8), sharex=True)
    for axis, (title, run) in zip(axes, runs, strict=True):
        start = 0.0
        for row, (stage, where) in enumerate(STAGES):
            width = run["stage_ms_p50"].get(stage, 0.0)
            axis.barh(row, width, left=start, color=COLOURS[where])
            axis.text(start + width + 1, row, f"{width:.1f}", va="center", fontsize=7)
            start += width
        axis.set_yticks(range(len(STAGES)), [stage for stage, _ in STAGES], fontsize=8)
        axis.invert_yaxis()
        axis.set_title(f"{title}: {run['trip_ms_p50']:.0f} ms from capture to output (p50)")
    axes[-1].set_xlabel("ms since the frame was captured (medians over the answers used)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    axes[0].legend(handles, list(COLOURS), loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
