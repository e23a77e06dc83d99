"""`splitcast loadgen`'s command line (the streams are `splitcast.loadgen`, imported when run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitcast.arguments import (
    add_client_security_arguments,
    client_security,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    server_address,
)


def add_loadgen_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "loadgen",
        help="many real edge streams against a server: answers/s, latency, errors",
        description="Open --streams real streams to a running server (JPEG frames of the "
        "built-in scene, encoded as its Info asks; answers decoded), paced at --fps (or "
        "flooding: --flood of them offer a frame every millisecond), for --duration seconds "
        "once all are connected. Prints answers per second, answer latency p50/p99 (capture to "
        "arrival), frames the server dropped and errors by kind, paced and flooding streams "
        "apart; --json writes the same.",
    )
    parser.add_argument(
        "--server", required=True, type=server_address, help="HOST:PORT of the server or proxy"
    )
    parser.add_argument("--streams", type=positive_int, default=4, help="streams (default: 4)")
    parser.add_argument(
        "--duration", type=positive_float, default=30.0, help="seconds of load (default: 30)"
    )
    parser.add_argument(
        "--fps",
        type=positive_float,
        default=30.0,
        help="frames per second per stream (default: 30)",
    )
    parser.add_argument(
        "--flood",
        type=non_negative_int,
        default=0,
        help="how many of the streams flood instead of pacing (default: 0)",
    )
    parser.add_argument(
        "--malformed-rate",
        type=non_negative_float,
        default=0.0,
        metavar="PER_S",
        help="soak: also send this many malformed messages a second (frames the server must "
        "refuse with a FrameError, and bytes that are no protobuf message, which must end "
        "their call with INVALID_ARGUMENT) and count how each was answered (default: 0)",
    )
    parser.add_argument(
        "--malformed-streams",
        type=positive_int,
        default=4,
        help="streams the malformed messages are spread over (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-url",
        metavar="URL",
        help="the server's /metrics (serve --metrics-port), e.g. http://127.0.0.1:9100/metrics: "
        "its resident memory is sampled once a second and reported at start, after warm-up "
        "and at the end",
    )
    parser.add_argument(
        "--warm-up",
        type=non_negative_float,
        default=10.0,
        metavar="SECONDS",
        help="when the memory reference is taken (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="write the report here")
    add_client_security_arguments(parser)
    parser.set_defaults(run=_run_loadgen)


def _run_loadgen(args: argparse.Namespace) -> None:
    from splitcast.files import write_json
    from splitcast.loadgen import LoadOptions, format_load, format_soak, run_load

    if args.flood > args.streams:
        raise ValueError(f"--flood {args.flood} is more than --streams {args.streams}")
    report = run_load(
        LoadOptions(
            server=args.server,
            streams=args.streams,
            duration_s=args.duration,
            fps=args.fps,
            flood=args.flood,
            security=client_security(args),
            malformed_rate=args.malformed_rate,
            malformed_streams=args.malformed_streams,
            metrics_url=args.metrics_url,
            warm_up_s=args.warm_up,
        )
    )
    print(format_load(report))
    print(format_soak(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, report)
        print(f"wrote {args.json}")
