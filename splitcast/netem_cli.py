"""`splitcast link` (the user-space relay shaping each direction) and `splitcast netem
apply|show|clear` (the kernel path: namespaces, veth, tc)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import threading
from pathlib import Path

from splitcast.arguments import non_negative_float, positive_int
from splitcast.netem.shaping import DISTRIBUTIONS, DirectionSpec
from splitcast.signals import until_terminated


def add_netem_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "netem",
        help="kernel path: shape a veth pair between two network namespaces with tc (root)",
        description="Create <name>-edge and <name>-cloud network namespaces joined by a veth "
        "pair and shape it with tc: netem for delay, jitter and loss where the kernel has it, tbf "
        "for a rate cap otherwise. Never touches the host's interfaces. Checks root and the qdisc "
        "kinds first and says what is missing; without netem, use `splitcast link`.",
    )
    actions = parser.add_subparsers(dest="netem_command", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="create the namespaces and apply the qdiscs")
    apply.add_argument("--delay-ms", type=non_negative_float, default=0.0, help="one-way delay")
    apply.add_argument("--jitter-ms", type=non_negative_float, default=0.0, help="netem jitter")
    apply.add_argument("--loss", type=non_negative_float, default=0.0, help="netem loss in %%")
    apply.add_argument("--rate-mbit", type=non_negative_float, help="rate cap each way (Mbit/s)")
    apply.add_argument(
        "--hold",
        action="store_true",
        help="stay in the foreground and clear everything on Ctrl-C or SIGTERM",
    )
    show = actions.add_parser("show", help="print the applied settings and qdiscs")
    clear = actions.add_parser("clear", help="delete the namespaces (and their qdiscs)")
    for action in (apply, show, clear):
        action.add_argument(
            "--name", default="splitcast", help="namespace prefix (default: %(default)s)"
        )
    parser.set_defaults(run=_run_netem)


def _run_netem(args: argparse.Namespace) -> None:
    from splitcast.netem.kernel import KernelLink, apply, clear, show

    if args.netem_command == "show":
        print(json.dumps(show(args.name), indent=2))
        return
    if args.netem_command == "clear":
        removed = clear(args.name)
        print(f"removed {', '.join(removed) if removed else 'nothing'}")
        return
    link = KernelLink(args.name, args.delay_ms, args.jitter_ms, args.loss, args.rate_mbit)
    record = apply(link)
    print(json.dumps(record, indent=2))
    edge, cloud = link.namespaces
    print(
        f"run the server with `ip netns exec {cloud} splitcast serve --host "
        f"{record['addresses']['cloud']}` and the edge with `ip netns exec {edge} splitcast "
        f"edge --server {record['addresses']['cloud']}:50051`",
        flush=True,
    )
    if not args.hold:
        print(f"undo with `splitcast netem clear --name {args.name}`")
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        clear(args.name)
        print(f"cleared {args.name}")


def add_link_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "link",
        help="relay TCP between edge and server with delay, jitter and bandwidth each way",
        description="A user-space TCP relay shaping each direction: one-way delay, jitter "
        "(uniform, normal, pareto, paretonormal; optionally correlated), a bandwidth cap with a "
        "bounded queue or a Mahimahi delivery trace, and loss as TCP feels it (RTO stalls, "
        "connection drops). Bytes are never reordered. Point the edge at --listen and the "
        "relay at the server.",
    )
    parser.add_argument(
        "--listen",
        required=True,
        help="HOST:PORT to accept edge connections on (port 0 = any free)",
    )
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the server")
    parser.add_argument(
        "--profile",
        help="start from a named profile (lan, wifi, lte, 5g, satellite) or FILE.yaml[:NAME]; "
        "the flags below override it",
    )
    parser.add_argument(
        "--delay-ms",
        type=non_negative_float,
        help="one-way delay edge->server (and server->edge unless --downlink-delay-ms); "
        "required without --profile",
    )
    parser.add_argument(
        "--downlink-delay-ms",
        type=non_negative_float,
        help="one-way delay server->edge (default: --delay-ms)",
    )
    parser.add_argument(
        "--jitter-ms", type=non_negative_float, help="standard deviation of the jitter (default: 0)"
    )
    parser.add_argument(
        "--jitter-dist", choices=DISTRIBUTIONS, help="jitter distribution (default: normal)"
    )
    parser.add_argument(
        "--correlation",
        type=non_negative_float,
        help="correlation of successive jitter draws, 0 to <1 (default: 0)",
    )
    parser.add_argument(
        "--rate-mbit", type=non_negative_float, help="bandwidth cap edge->server (Mbit/s)"
    )
    parser.add_argument(
        "--downlink-rate-mbit",
        type=non_negative_float,
        help="bandwidth cap server->edge (default: --rate-mbit)",
    )
    parser.add_argument(
        "--trace", type=Path, help="Mahimahi delivery trace edge->server (replaces --rate-mbit)"
    )
    parser.add_argument("--downlink-trace", type=Path, help="Mahimahi delivery trace server->edge")
    parser.add_argument(
        "--conditions",
        type=Path,
        help="CSV time_s,delay_ms,bandwidth_mbit of recorded conditions edge->server "
        "(replaces the base delay and bandwidth)",
    )
    parser.add_argument("--downlink-conditions", type=Path, help="the same for server->edge")
    parser.add_argument(
        "--queue-kb",
        type=positive_int,
        help="bytes that may wait in each direction before the relay stops reading "
        "(default: 4096 KiB)",
    )
    parser.add_argument(
        "--stall-prob",
        type=non_negative_float,
        help="chance that a chunk is lost once and arrives one RTO late (default: 0)",
    )
    parser.add_argument(
        "--rto-ms", type=non_negative_float, help="retransmission timeout of a stall (default: 200)"
    )
    parser.add_argument(
        "--drops-per-min",
        type=non_negative_float,
        help="rate at which the link breaks a connection (default: 0)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="jitter and loss seed (default: %(default)s)"
    )
    parser.add_argument("--log", type=Path, help="JSON lines: the delay applied to each chunk")
    parser.set_defaults(run=_run_link)


def _run_link(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from splitcast.netem.profiles import load_profile
    from splitcast.netem.relay import DelayRelay, Endpoint
    from splitcast.netem.shaping import ShapingError

    if args.profile:
        profile = load_profile(args.profile)
        uplink, downlink, name = profile.uplink, profile.downlink, f"profile {profile.name}"
    elif args.delay_ms is None and args.conditions is None:
        raise ShapingError("give --delay-ms, --conditions or --profile")
    else:
        uplink = downlink = DirectionSpec()
        name = "custom"

    def given(**values: object) -> dict[str, object]:
        return {key: value for key, value in values.items() if value is not None}

    def override(
        spec: DirectionSpec,
        delay_ms: float | None,
        rate: float | None,
        trace: Path | None,
        conditions: Path | None,
    ) -> DirectionSpec:
        delay = replace(
            spec.delay,
            **given(
                delay_ms=delay_ms,
                jitter_ms=args.jitter_ms,
                distribution=args.jitter_dist,
                correlation=args.correlation,
            ),
        )
        loss = replace(
            spec.loss,
            **given(
                stall_probability=args.stall_prob,
                rto_ms=args.rto_ms,
                drops_per_minute=args.drops_per_min,
            ),
        )
        queue = args.queue_kb * 1024 if args.queue_kb else None
        return replace(
            spec,
            delay=delay,
            loss=loss,
            **given(rate_mbit=rate, trace=trace, queue_bytes=queue, conditions=conditions),
        )

    down_delay = args.delay_ms if args.downlink_delay_ms is None else args.downlink_delay_ms
    down_rate = args.rate_mbit if args.downlink_rate_mbit is None else args.downlink_rate_mbit
    uplink = override(uplink, args.delay_ms, args.rate_mbit, args.trace, args.conditions)
    downlink = override(
        downlink, down_delay, down_rate, args.downlink_trace, args.downlink_conditions
    )
    relay = DelayRelay(
        Endpoint.parse(args.listen),
        Endpoint.parse(args.upstream),
        uplink,
        downlink,
        seed=args.seed,
        log_path=args.log,
    )

    async def run() -> None:
        port = await relay.start()
        print(
            f"splitcast link: listening on {relay.listen.host}:{port} -> {relay.upstream} "
            f"({name}: {_describe(uplink)} up, {_describe(downlink)} down)",
            flush=True,
        )
        await until_terminated()
        await relay.close()

    asyncio.run(run())


def _describe(spec: DirectionSpec) -> str:
    delay = spec.delay
    parts = [f"+{delay.delay_ms:g} ms"]
    if delay.jitter_ms:
        parts.append(f"jitter {delay.jitter_ms:g} ms {delay.distribution}")
    if spec.conditions:
        parts.append(f"conditions {spec.conditions.name}")
    elif spec.trace:
        parts.append(f"trace {spec.trace.name}")
    elif spec.rate_mbit:
        parts.append(f"{spec.rate_mbit:g} Mbit/s")
    if spec.loss.stall_probability:
        parts.append(f"stalls {spec.loss.stall_probability:g}")
    return ", ".join(parts)
