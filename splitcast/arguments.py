"""Argument types shared by the subcommands: bad values become argparse errors, not tracebacks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from splitcast.edge.credentials import ClientSecurity


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def server_address(text: str) -> str:
    """A server address gRPC can dial, checked at start (a typo is an error, not a silent
    local-only run)."""
    from splitcast.edge.connection import check_target

    try:
        return check_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"quality must be 1..100, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text}")
    return value


def number_list(text: str) -> list[float]:
    """`0-10` (whole numbers in a range) or `0,3,5.5` (explicit)."""
    try:
        if "-" in text and "," not in text:
            low, high = (int(v) for v in text.split("-"))
            values = [float(v) for v in range(low, high + 1)]
        else:
            values = [float(v) for v in text.split(",") if v]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected a range like 0-10 (low to high) or a list like 0,3,5, got {text!r}"
        )
    return values


def int_list(text: str) -> list[int]:
    values = number_list(text)
    if any(v != int(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected whole numbers, got {text!r}")
    return [int(v) for v in values]


def delay_range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        values = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MIN-MAX ticks (e.g. 0-5), got {text!r}"
        ) from None
    if not 0 <= values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"need 0 <= MIN <= MAX, got {text!r}")
    return values


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """`--model`, the same on every command that serves or runs a checkpoint live."""
    parser.add_argument(
        "--model",
        default="default",
        help="packaged checkpoint (default), checkpoint folder or configuration name "
        "(default: %(default)s)",
    )


def add_device_arguments(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """`--device` and `--precision`, the same on every command that runs a model; `scope`
    says which part of the command they apply to, where not all of it."""
    parser.add_argument(
        "--device",
        default="auto",
        help=f"{scope}auto (CUDA when present), cpu, cuda or cuda:N; a device asked for and "
        "absent is an error (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        help="autocast precision on CUDA (default: bf16 on CUDA, fp32 on the CPU)",
    )


def set_threads(threads: int | None) -> None:
    """Apply a command's `--threads` to torch (None: torch's choice)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_client_security_arguments(parser: argparse.ArgumentParser) -> None:
    """The edge's counterparts of `splitcast serve`'s TLS and token flags."""
    group = parser.add_argument_group("security")
    group.add_argument(
        "--tls", action="store_true", help="connect over TLS, trusting the system's CAs"
    )
    group.add_argument(
        "--tls-ca", type=Path, help="PEM CA that signed the server's certificate (implies --tls)"
    )
    group.add_argument(
        "--tls-cert", type=Path, help="PEM certificate of this edge (servers with mutual TLS)"
    )
    group.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    group.add_argument(
        "--token-file",
        type=Path,
        help="file holding the bearer token (default: $SPLITCAST_TOKEN if set; else none)",
    )


def client_security(args: argparse.Namespace) -> ClientSecurity:
    """The edge's security flags as `ClientSecurity` (ValueError when they do not fit)."""
    from splitcast.edge.credentials import ClientSecurity
    from splitcast.v1.auth import token_from

    tls = args.tls or args.tls_ca is not None or args.tls_cert is not None
    return ClientSecurity(
        tls=tls,
        ca=args.tls_ca,
        cert=args.tls_cert,
        key=args.tls_key,
        token=token_from(args.token_file),
    )
