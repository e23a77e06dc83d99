"""The `splitcast` command line: serve, edge, link, demo, data, train, fit, package, export,
bench, loadgen, evaluate, sweep, calibrate, netem."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from splitcast.arguments import (
    add_client_security_arguments,
    add_device_arguments,
    add_model_argument,
    client_security,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    server_address,
    set_threads,
)
from splitcast.bench_cli import add_bench_command
from splitcast.data_cli import add_data_commands
from splitcast.edge.sources import MOVING_SCENE
from splitcast.evaluate_cli import (
    add_calibrate_command,
    add_evaluate_command,
    add_sweep_command,
)
from splitcast.export_cli import add_export_command
from splitcast.files import write_json
from splitcast.fit_cli import add_fit_command
from splitcast.loadgen_cli import add_loadgen_command
from splitcast.models.runtime_names import RUNTIMES
from splitcast.netem_cli import add_link_command, add_netem_command
from splitcast.serve_cli import add_serve_command
from splitcast.signals import (
    interrupted_status,
    let_threads_finish,
    raise_on_terminate,
    signal_name,
    stopped_status,
)
from splitcast.train_cli import add_package_command, add_train_command


def _add_edge(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "edge",
        help="run the edge client on a video file or the built-in moving scene",
        description="Segment every frame on time with the local model; stream frames to the server "
        "(encoded as its Info says) and combine the freshest answer it returns with the local "
        "output, as the model's combiner does. Runs local-only when answers are too stale or the "
        "server is unreachable, and reconnects in the background.",
    )
    parser.add_argument(
        "--server",
        type=server_address,
        help="HOST:PORT of the server or link (omit to run local-only)",
    )
    parser.add_argument(
        "--source",
        default=MOVING_SCENE,
        help="video file, folder of images (name order, at --fps), camera index (0), device "
        f"(/dev/video0), rtsp:// or http:// URL, or '{MOVING_SCENE}' (default)",
    )
    parser.add_argument(
        "--frames",
        type=positive_int,
        help="stop after this many frames (moving scene default: 150)",
    )
    parser.add_argument(
        "--fps",
        type=positive_float,
        default=30.0,
        help="frame rate of a folder of images or the moving scene (default: %(default)s)",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--fast",
        action="store_true",
        help="process frames as fast as possible instead of at the source frame rate",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=RUNTIMES[0],
        help="what runs the local model; onnxruntime exports it once per checkpoint into "
        "$SPLITCAST_CACHE/onnx (default ~/.cache/splitcast; default: %(default)s)",
    )
    parser.add_argument(
        "--providers",
        type=_provider_list,
        default=("cpu",),
        metavar="NAME,...",
        help="ONNX Runtime execution providers for the local model, in order of preference: "
        "tensorrt, cuda, cpu (the CPU is always added last); one this onnxruntime lacks is an "
        "error listing those it has (default: cpu)",
    )
    add_device_arguments(
        parser, "where --runtime torch runs the local model (ONNX Runtime uses --providers): "
    )
    parser.add_argument(
        "--panels",
        action="store_true",
        help="write --video as the four-panel comparison: the remote's answer used late, its "
        "forecast (late-average models send both), local-only and splitcast's output",
    )
    parser.add_argument(
        "--max-staleness",
        type=non_negative_int,
        metavar="FRAMES",
        help="do not use answers older than this many frames (default: the model's answer "
        "horizon, e.g. 30 frames for a 30-tick horizon at the model's frame rate)",
    )
    parser.add_argument(
        "--initial-delay",
        type=non_negative_float,
        metavar="TICKS",
        help="D_i to request before any delay is measured (default: the --max-staleness limit "
        "in ticks, the worst delay still used: over-estimating the delay costs less than "
        "under-estimating it)",
    )
    parser.add_argument(
        "--wait-for-server",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the server before the first frame (default: %(default)s)",
    )
    parser.add_argument("--video", type=Path, help="write an overlay video here (.mp4 or .avi)")
    parser.add_argument("--log", type=Path, help="write the per-frame JSON-lines log here")
    parser.add_argument("--summary", type=Path, help="write the run summary JSON here")
    parser.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's choice)"
    )
    add_client_security_arguments(parser)
    parser.set_defaults(run=_run_edge)


def _add_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="server + link + edge on loopback; writes out/demo.mp4 and a summary",
        description="Start a server and a delay link on loopback, run the edge on the built-in "
        "moving scene (or --source) in real time, write the four-panel comparison video (the "
        "remote's answer used late, its forecast, local-only, splitcast), a per-frame log and "
        "a summary.",
    )
    parser.add_argument(
        "--rtt-ms",
        type=non_negative_float,
        default=100.0,
        help="round-trip delay of the link (default: %(default)s)",
    )
    parser.add_argument(
        "--frames",
        type=positive_int,
        default=300,
        help="frames of the moving scene: ten seconds by default, so that the stream's start, "
        "before any answer can have come back, is a small part of the run (default: "
        "%(default)s)",
    )
    parser.add_argument(
        "--source", default=MOVING_SCENE, help=f"video file, or '{MOVING_SCENE}' (default)"
    )
    add_model_argument(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="output directory (default: %(default)s)"
    )
    add_device_arguments(parser, "where the server runs the remote model: ")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="the server's temporal model and heads through torch.compile (see serve --help)",
    )
    parser.add_argument(
        "--single-panel",
        action="store_true",
        help="a video of splitcast's output alone instead of the four-panel comparison (the "
        "remote's answer used late, its forecast, local-only, splitcast)",
    )
    parser.set_defaults(run=_run_demo)


FULL_INSTALL_MODULES = (
    "torch",
    "torchvision",
    "timm",
    "onnx",
    "onnxscript",
    "pybullet",
    "safetensors",
    "matplotlib",
    "PIL",
    "grpc_health",
    "grpc_reflection",
)
"""Modules of the training and serving stack that the edge-only install leaves out."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitcast",
        description="Real-time split inference on video between an edge device and a cloud server: "
        "the server answers for the delay its answer will arrive with (Dedelayed), the edge "
        "combines the late answer with its own on-time output and never waits for the network.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve_command(commands)
    _add_edge(commands)
    add_link_command(commands)
    _add_demo(commands)
    add_data_commands(commands)
    add_train_command(commands)
    add_fit_command(commands)
    add_package_command(commands)
    add_export_command(commands)
    add_bench_command(commands)
    add_loadgen_command(commands)
    add_evaluate_command(commands)
    add_sweep_command(commands)
    add_calibrate_command(commands)
    add_netem_command(commands)
    return parser


def _provider_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected provider names, e.g. cuda,cpu")
    return names


def _run_edge(args: argparse.Namespace) -> int:
    from splitcast.edge.loop import EdgeOptions, run_edge
    from splitcast.edge.sources import open_source

    set_threads(args.threads)
    source = open_source(args.source, max_frames=args.frames, fps=args.fps)
    options = EdgeOptions(
        model=args.model,
        runtime=args.runtime,
        providers=args.providers,
        device=args.device,
        precision=args.precision,
        panels=args.panels,
        server=args.server,
        security=client_security(args),
        realtime=not args.fast,
        max_staleness_frames=args.max_staleness,
        initial_delay_ticks=args.initial_delay,
        wait_for_server_s=args.wait_for_server,
        video_path=args.video,
        log_path=args.log,
    )
    summary = run_edge(source, options)
    if args.summary:
        write_json(args.summary, summary.to_dict())
    print(json.dumps(summary.to_dict(), indent=2))
    return stopped_status(args.command, summary.stopped_by)


def _run_demo(args: argparse.Namespace) -> int:
    from splitcast.demo import format_summary, run_demo
    from splitcast.edge.sources import open_source
    from splitcast.models.devices import placement

    placement(args.device, args.precision)  # what this machine lacks fails here, not in the server
    source = open_source(args.source, max_frames=args.frames)
    summary = run_demo(
        source,
        args.out,
        args.rtt_ms,
        args.model,
        args.device,
        args.precision,
        ["--compile"] if args.compile else None,
        panels=not args.single_panel,
        say=lambda line: print(f"splitcast demo: {line}", flush=True),
    )
    print(f"splitcast demo: RTT {args.rtt_ms:g} ms, model {args.model}, source {summary.source}")
    print(format_summary(summary))
    print(f"wrote {args.out / 'demo.mp4'}, {args.out / 'demo.jsonl'}, {args.out / 'summary.json'}")
    return stopped_status(args.command, summary.stopped_by)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    raise_on_terminate()
    # tqdm's monitor thread sleeps 10 s at a time: let_threads_finish would wait for it in vain
    tqdm.monitor_interval = 0
    try:
        return _run_command(args)
    finally:
        let_threads_finish()


def _run_command(args: argparse.Namespace) -> int:
    """Run the command; its exit status (2: an error it explained, 130/143: stopped by Ctrl-C
    or SIGTERM after saving what it had)."""
    from splitcast.edge.sources import SourceError
    from splitcast.launch import LaunchError
    from splitcast.models.errors import CheckpointError, WeightsError
    from splitcast.netem.kernel import KernelPathError

    try:
        return args.run(args) or 0
    except KeyboardInterrupt as interrupt:
        print(f"splitcast {args.command}: stopped by {signal_name(interrupt)}", file=sys.stderr)
        return interrupted_status(interrupt)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in FULL_INSTALL_MODULES:
            raise
        print(
            f"splitcast {args.command}: error: this command needs the full install "
            f"(pip install 'splitcast[full]'): no module named {exc.name}",
            file=sys.stderr,
        )
        return 2
    except (
        SourceError,
        LaunchError,
        CheckpointError,
        WeightsError,
        KernelPathError,
        KeyError,
        ValueError,
        OSError,
    ) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        subcommand = getattr(args, "data_command", None) or getattr(args, "netem_command", None)
        command = " ".join(filter(None, (args.command, subcommand)))
        print(f"splitcast {command}: error: {message}", file=sys.stderr)
        return 2
