"""Added one-way delay of the relay: what it adds beyond the configured delay, per message.

    .venv/bin/python benchmarks/bench_relay.py [--delay-ms 50] [--messages 300] [--json PATH]

Small messages (64 bytes, TCP_NODELAY) go every 10 ms from a client through a `DelayRelay`
on loopback to a sink in the same process; the one-way delay of each message is its arrival
time minus its send time on one clock. Prints p50/p99 of the measured delay and of the excess
over the setting (goal: p99 excess within 3 ms on an idle machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import threading
import time
from pathlib import Path

import numpy as np

from splitcast.netem.relay import DelayRelay, Endpoint, RelayThread
from splitcast.netem.shaping import DelaySpec, DirectionSpec

MESSAGE = b"m" * 64


def measure(delay_ms: float, messages: int, interval_s: float) -> np.ndarray:
    """One-way delays (ms) of `messages` small messages through the relay."""
    listener = socket.create_server(("127.0.0.1", 0))
    arrivals: list[float] = []

    def sink() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                now = time.perf_counter()
                arrivals.extend([now] * (len(data) // len(MESSAGE)))

    reader = threading.Thread(target=sink, daemon=True)
    reader.start()
    upstream = Endpoint("127.0.0.1", listener.getsockname()[1])
    relay = DelayRelay(Endpoint("127.0.0.1", 0), upstream, DirectionSpec(DelaySpec(delay_ms)))
    sent: list[float] = []
    with (
        RelayThread(relay) as running,
        socket.create_connection(("127.0.0.1", running.relay.port)) as conn,
    ):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(messages):
            sent.append(time.perf_counter())
            conn.sendall(MESSAGE)
            time.sleep(interval_s)
        deadline = time.monotonic() + delay_ms / 1000 + 2.0
        while len(arrivals) < messages and time.monotonic() < deadline:
            time.sleep(0.01)
    listener.close()
    return (np.array(arrivals[:messages]) - np.array(sent[: len(arrivals)])) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    delays = measure(args.delay_ms, args.messages, args.interval_ms / 1000)
    excess = delays - args.delay_ms
    figures = {
        "machine": platform.processor() or platform.machine(),
        "setting_ms": args.delay_ms,
        "messages": len(delays),
        "one_way_p50_ms": round(float(np.percentile(delays, 50)), 3),
        "one_way_p99_ms": round(float(np.percentile(delays, 99)), 3),
        "added_p50_ms": round(float(np.percentile(excess, 50)), 3),
        "added_p99_ms": round(float(np.percentile(excess, 99)), 3),
        "min_ms": round(float(delays.min()), 3),
    }
    for key, value in figures.items():
        print(f"{key:16} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
