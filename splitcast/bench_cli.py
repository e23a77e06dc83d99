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


def _cell(value: float | None, width: int, spec: str = ".2f") -> str:
    """A table cell: the figure, or "-" where the run could not measure it."""
    return f"{'-' if value is None else format(value, spec):>{width}}"


def format_bench(result: dict[str, Any]) -> str:
    """The printed table: the edge step per runtime, every stage of the trip in both runs
    ("-" where a run traced no answer, and why), the overhead per frame, the link's setting
    against what was measured, and the goals."""
    lines = ["edge step (ms, p50)          local-only  with answer  ratio  ids = first"]
    for name, run in result["edge_step"].items():
        lines.append(
            f"  {name:28}{run['local_only_ms_p50']:>8.2f}{run['with_answer_ms_p50']:>13.2f}"
            f"{run['with_answer_over_local_only']:>7.3f}{run['ids_equal_to_first']:>12.4f}"
        )
    loopback, link = result["loopback"], result["link"]
    lines.append(f"\none frame's trip (ms, p50)     loopback  link {result['rtt_ms']:g} ms RTT")
    for stage, value in loopback["stage_ms_p50"].items():
        lines.append(f"  {stage:28}{_cell(value, 8)}{_cell(link['stage_ms_p50'][stage], 12)}")
    lines.append(
        f"  {'total':28}{_cell(loopback['trip_ms_p50'], 8)}{_cell(link['trip_ms_p50'], 12)}"
    )
    for name in (
        "combined_fraction",
        "answers_traced",
        "skipped",
        "server_time_p50_ms",
        "stale_d_o_p50_frames",
        "max_staleness_frames",
    ):
        lines.append(f"  {name:28}{_cell(loopback[name], 8, '')}{_cell(link[name], 12, '')}")
    for name, run in (("loopback", loopback), ("link", link)):
        if run["why_untraced"]:
            lines.append(f"  {name} traced no answer: {run['why_untraced']}")
    overhead, network = result["overhead_per_frame_on_loopback"], result["network"]
    not_measured = result["not_measured"]
    lines.append("\nper frame on loopback, no link (ms, p50)")
    lines += [f"  {name:44}{_cell(value, 7, '.3f')}" for name, value in overhead.items()]
    if "overhead_per_frame_on_loopback" in not_measured:
        lines.append(f"  not measured: {not_measured['overhead_per_frame_on_loopback']}")
    measured = (
        f"measured uplink {network['uplink_measured_ms']:.1f} ms, "
        f"downlink {network['downlink_measured_ms']:.1f} ms"
        if "network" not in not_measured
        else f"not measured: {not_measured['network']}"
    )
    lines.append(f"link: {network['link_setting_one_way_ms']:g} ms each way set; {measured}")
    goals = result["goals"]
    ratios = goals["edge_step_with_answer_over_local_only"]["reached"]
    codec = goals["grpc_serialisation_and_codec_ms"]["reached"]
    lines.append(
        "goals: edge step with an answer <= 1.05x local-only: "
        + ", ".join(f"{name} {ratio:.3f}" for name, ratio in ratios.items())
        + "; gRPC + serialisation + codec <= 1 ms: "
        + ("not measured" if codec is None else f"{codec:.3f} ms")
    )
    return "\n".join(lines)


def plot_waterfall(result: dict[str, Any], path: Path) -> None:
    """One row per stage, each bar starting where the one before ended, for both runs; a run
    that traced no answer shows why instead of bars."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from splitcast.bench import STAGES

    link = f"link, {result['rtt_ms']:g} ms RTT"
    runs = [("loopback", result["loopback"]), (link, result["link"])]
    figure, axes = plt.subplots(len(runs), 1, figsize=(10, 8), sharex=True)
    for axis, (title, run) in zip(axes, runs, strict=True):
        if run["why_untraced"]:
            why = textwrap.fill(run["why_untraced"], 90)
            axis.text(0.5, 0.5, why, transform=axis.transAxes, ha="center", va="center")
            axis.set_title(f"{title}: not measured, no answer traced")
        else:
            start = 0.0
            for row, (stage, where) in enumerate(STAGES):
                width = run["stage_ms_p50"][stage]
                axis.barh(row, width, left=start, color=COLOURS[where])
                axis.text(start + width + 1, row, f"{width:.1f}", va="center", fontsize=7)
                start += width
            axis.set_title(f"{title}: {run['trip_ms_p50']:.0f} ms from capture to output (p50)")
        axis.set_yticks(range(len(STAGES)), [stage for stage, _ in STAGES], fontsize=8)
        axis.invert_yaxis()
    axes[-1].set_xlabel("ms since the frame was captured (medians over the answers used)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    axes[0].legend(handles, list(COLOURS), loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
