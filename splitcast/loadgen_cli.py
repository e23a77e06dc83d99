"""`splitcast loadgen`'s command line (the streams are `splitcast.loadgen`, imported when run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitcast.arguments import (
    add_client_security_arguments,
    client_security,
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
    parser.add_argument("--json", type=Path, help="write the report here")
    add_client_security_arguments(parser)
    parser.set_defaults(run=_run_loadgen)


def _run_loadgen(args: argparse.Namespace) -> None:
    from splitcast.files import write_json
    from splitcast.loadgen import LoadOptions, format_load, run_load

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
        )
    )
    print(format_load(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, report)
        print(f"wrote {args.json}")
