"""`splitcast serve`'s command line (the server itself is `splitcast.cloud`)."""

from __future__ import annotations

import argparse
import asyncio

from splitcast.arguments import add_device_arguments, add_model_argument, positive_int, set_threads
from splitcast.models.codec_names import CODEC_NAMES
from splitcast.models.runtime_names import RUNTIMES
from splitcast.signals import until_terminated

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
    parser.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> None:
    from splitcast.cloud.runtime import warm_runtime
    from splitcast.cloud.server import start_server

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
        server, servicer, port = await start_server(
            runtime, args.host, args.port, args.max_message_mb * 1024 * 1024
        )
        print(
            f"splitcast serve: listening on {args.host}:{port} (model {config.name} "
            f"{config.version}, {runtime.combiner.name} via {runtime.codec.name}, "
            f"K={config.context_frames}, "
            f"{config.fps:g} fps, on {runtime.device} in {runtime.precision})",
            flush=True,
        )
        await until_terminated()
        await server.stop(grace=2.0)
        servicer.close()

    asyncio.run(serve())
