"""The delay relay on loopback: added delay, byte order, and clean shutdown."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from splitcast.netem.relay import DelayRelay, Endpoint, RelayThread


@pytest.fixture
def echo_server() -> Iterator[Endpoint]:
    """A threaded TCP echo server on a free loopback port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield Endpoint("127.0.0.1", listener.getsockname()[1])
    stop.set()
    thread.join()
    listener.close()


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(size)
        assert chunk, "connection closed early"
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def test_round_trip_of_small_messages_is_the_configured_rtt(echo_server: Endpoint) -> None:
    relay = DelayRelay(Endpoint("127.0.0.1", 0), echo_server, uplink_delay_ms=50.0)
    with (
        RelayThread(relay) as running,
        socket.create_connection(("127.0.0.1", running.relay.port)) as conn,
    ):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for index in range(30):
            message = index.to_bytes(4, "big") * 16
            start = time.perf_counter()
            conn.sendall(message)
            assert _recv_exactly(conn, len(message)) == message
            rtts.append((time.perf_counter() - start) * 1000.0)
    median = statistics.median(rtts)
    print(
        f"relay RTT at a 100 ms setting: median {median:.2f} ms, "
        f"min {min(rtts):.2f}, max {max(rtts):.2f}"
    )
    assert abs(median - 100.0) <= 5.0
    assert min(rtts) >= 99.0, "a message came back earlier than the configured delay"


def test_bytes_keep_their_order_under_load(echo_server: Endpoint) -> None:
    payload = bytes(i % 251 for i in range(3_000_000))
    relay = DelayRelay(
        Endpoint("127.0.0.1", 0), echo_server, uplink_delay_ms=5.0, downlink_delay_ms=20.0
    )
    with (
        RelayThread(relay) as running,
        socket.create_connection(("127.0.0.1", running.relay.port)) as conn,
    ):
        sender = threading.Thread(target=conn.sendall, args=(payload,))
        sender.start()
        received = _recv_exactly(conn, len(payload))
        sender.join()
    assert received == payload


def test_unreachable_upstream_closes_the_client_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    relay = DelayRelay(
        Endpoint("127.0.0.1", 0), Endpoint("127.0.0.1", dead_port), uplink_delay_ms=10.0
    )
    with (
        RelayThread(relay) as running,
        socket.create_connection(("127.0.0.1", running.relay.port)) as conn,
    ):
        conn.settimeout(5.0)
        assert conn.recv(1) == b""


def test_endpoint_parsing() -> None:
    assert Endpoint.parse("127.0.0.1:50051") == Endpoint("127.0.0.1", 50051)
    assert Endpoint.parse("[::1]:80") == Endpoint("::1", 80)
    with pytest.raises(ValueError, match="HOST:PORT"):
        Endpoint.parse("localhost")
