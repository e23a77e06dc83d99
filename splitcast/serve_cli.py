"""`splitcast serve`'s command line (the server itself is `splitcast.cloud`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path

from splitcast.arguments import (
    add_device_arguments,
    add_model_argument,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    set_threads,
)
from splitcast.cloud.options import (
    DEFAULT_DRAIN_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTION_AGE_S,
    DEFAULT_MAX_STREAM_FPS,
    DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_WAIT_S,
    GPU_MAX_BATCH,
    ServeOptions,
)
from splitcast.cloud.security import TlsFiles
from splitcast.models.codec_names import CODEC_NAMES
from splitcast.models.runtime_names import RUNTIMES
from splitcast.signals import until_terminated
from splitcast.v1.auth import TOKEN_ENV, token_from

DEFAULT_PORT = 50051


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the cloud server (gRPC)",
        description="Serve the remote model over gRPC: one latest-wins session per edge stream, "
        "answers conditioned on the delay each frame asks for. Also serves gRPC health checking "
        "and reflection. Stops gracefully on Ctrl-C / SIGTERM.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s; 0.0.0.0 for all)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port (0 = any free port; default: %(default)s)",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="torch CPU threads for the model (default: torch's choice)",
    )
    parser.add_argument(
        "--nice",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="lower the server's CPU priority by N (Unix nice) when it shares a machine with a "
        "real-time edge, as the demo's does: the edge then gets the CPU it needs first and the "
        "server's answers come a little later (default: %(default)s)",
    )
    parser.add_argument(
        "--encoder",
        choices=RUNTIMES,
        default=RUNTIMES[0],
        help="runtime of the remote's per-frame encoder on the CPU (on CUDA it runs in torch); "
        "onnxruntime exports it once per checkpoint into $SPLITCAST_CACHE/onnx (default "
        "~/.cache/splitcast; default: %(default)s)",
    )
    add_device_arguments(parser)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the temporal model and heads through torch.compile (compiled before the "
        "server reports SERVING: a slower start for a faster step)",
    )
    parser.add_argument(
        "--memory-format",
        choices=("channels-last", "contiguous"),
        default="channels-last",
        help="layout of the PyTorch parts' weights and inputs; channels-last measured faster "
        "on CPUs (default: %(default)s)",
    )
    parser.add_argument(
        "--max-message-mb",
        type=positive_int,
        default=8,
        help="largest uplink message accepted, MiB (default: %(default)s)",
    )
    parser.add_argument(
        "--codec",
        choices=CODEC_NAMES,
        help="downlink codec (default: the model's; 'learned' needs a checkpoint trained with one)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; "
        "default: none)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=positive_float,
        default=DEFAULT_DRAIN_S,
        help="on SIGTERM or Ctrl-C: health goes NOT_SERVING, new streams are refused, open "
        "streams end after their frame in progress; calls still open this long after are "
        "cancelled (default: %(default)s)",
    )
    _add_security_arguments(parser)
    parser.set_defaults(run=_run_serve)


def _add_security_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("security and limits")
    group.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS only")
    group.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    group.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA that must have signed every client's certificate (mutual TLS)",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        help=f"file holding the bearer token every call must carry (default: ${TOKEN_ENV} "
        "if set; else no token)",
    )
    group.add_argument(
        "--open-health",
        action="store_true",
        help="answer gRPC health checks without the token (for load balancers)",
    )
    group.add_argument(
        "--max-batch",
        type=positive_int,
        help=f"frames of different streams stepped together at most (default: {GPU_MAX_BATCH} "
        "on a GPU, 1 on a CPU, where a batch's time grows with its size)",
    )
    group.add_argument(
        "--max-wait-ms",
        type=non_negative_float,
        default=DEFAULT_MAX_WAIT_S * 1000,
        help="how long a batch waits for more streams' frames after its first, never longer "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--max-stream-fps",
        type=non_negative_float,
        default=DEFAULT_MAX_STREAM_FPS,
        help="uplink frames read per second per stream; a faster sender waits (gRPC flow "
        "control), so it cannot take other streams' turns (0: no limit; default: %(default)s)",
    )
    group.add_argument(
        "--idle-timeout",
        type=positive_float,
        default=DEFAULT_IDLE_TIMEOUT_S,
        metavar="SECONDS",
        help="close a stream that sends no frame this long (default: %(default)s)",
    )
    group.add_argument(
        "--max-connection-age",
        type=positive_float,
        default=DEFAULT_MAX_CONNECTION_AGE_S,
        metavar="SECONDS",
        help="tell connections to go away after this long (then --drain-seconds to finish), "
        "so edges reconnect and spread over replicas added since (default: %(default)s)",
    )
    group.add_argument(
        "--max-streams",
        type=positive_int,
        default=DEFAULT_MAX_STREAMS,
        help="edge streams served at once; more are refused with RESOURCE_EXHAUSTED "
        "(default: %(default)s)",
    )


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The listening, security and limit flags as `ServeOptions` (ValueError when they do not
    fit together)."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    tls = None
    if args.tls_cert is not None:
        tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    return ServeOptions(
        host=args.host,
        port=args.port,
        max_message_bytes=args.max_message_mb * 1024 * 1024,
        tls=tls,
        token=token_from(args.token_file),
        open_health=args.open_health,
        max_streams=args.max_streams,
        metrics_port=args.metrics_port,
        drain_s=args.drain_seconds,
        max_batch=args.max_batch,
        max_wait_s=args.max_wait_ms / 1000,
        max_stream_fps=args.max_stream_fps,
        idle_timeout_s=args.idle_timeout,
        max_connection_age_s=args.max_connection_age,
    )


def _run_serve(args: argparse.Namespace) -> None:
    from splitcast.cloud.runtime import warm_runtime
    from splitcast.cloud.security import server_credentials
    from splitcast.cloud.server import start_server

    options = serve_options(args)
    if options.tls is not None:
        server_credentials(options.tls)  # unreadable files fail before the model loads
    ensure_free(options.host, options.port)
    if args.nice:  # before any thread starts: threads inherit it
        os.nice(args.nice)
    set_threads(args.threads)
    runtime = warm_runtime(
        args.model,
        args.codec,
        args.encoder,
        args.device,
        args.precision,
        args.compile,
        channels_last=args.memory_format == "channels-last",
    )
    config = runtime.config

    async def serve() -> None:
        server, servicer, port = await start_server(runtime, options)
        scheme = "plaintext" if options.tls is None else "TLS"
        if options.tls is not None and options.tls.client_ca is not None:
            scheme = "mutual TLS"
        print(
            f"splitcast serve: listening on {args.host}:{port} ({scheme}"
            f"{', bearer token' if options.token else ''}; model {config.name} "
            f"{config.version}, {runtime.combiner.name} via {runtime.codec.name}, "
            f"K={config.context_frames}, "
            f"{config.fps:g} fps, on {runtime.device} in {runtime.precision})",
            flush=True,
        )
        if servicer.metrics_port is not None:
            print(f"metrics on http://{args.host}:{servicer.metrics_port}/metrics", flush=True)
        await until_terminated()
        await servicer.drain()
        await server.stop(grace=options.drain_s)
        servicer.close()
        print("splitcast serve: drained and stopped", flush=True)

    asyncio.run(serve())


def ensure_free(host: str, port: int) -> None:
    """Fail before loading the model when `host`:`port` is taken (gRPC's own bind, without
    port sharing, is the final check)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
