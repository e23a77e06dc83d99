"""`splitcast netem apply|show|clear`: the kernel path (namespaces, veth, tc) as commands."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from splitcast.arguments import non_negative_float


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
