"""The delay relay on loopback: added delay, byte order, and clean shutdown."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from splitcast.netem.relay import DelayRelay, Endpoint, RelayThread
from splitcast.netem.shaping import DelaySpec, DirectionSpec, LossSpec

SCHEDULING_SLACK_MS = 15.0


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


def _delay(ms: float) -> DirectionSpec:
    return DirectionSpec(DelaySpec(ms))


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(size)
        assert chunk, "connection closed early"
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def test_round_trip_of_small_messages_is_the_configured_rtt(echo_server: Endpoint) -> None:
    relay = DelayRelay(Endpoint("127.0.0.1", 0), echo_server, _delay(50.0))
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
    # Load on a shared machine can only add delay, so the floor is tight and the ceiling loose.
    assert min(rtts) >= 99.0, "a message came back earlier than the configured delay"
    assert median <= 100.0 + SCHEDULING_SLACK_MS


def test_bytes_keep_their_order_under_load(echo_server: Endpoint) -> None:
    payload = bytes(i % 251 for i in range(3_000_000))
    relay = DelayRelay(Endpoint("127.0.0.1", 0), echo_server, _delay(5.0), _delay(20.0))
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
    relay = DelayRelay(Endpoint("127.0.0.1", 0), Endpoint("127.0.0.1", dead_port), _delay(10.0))
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


class _Sink:
    """A TCP server that reads everything and records when each chunk arrived."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = Endpoint("127.0.0.1", self.listener.getsockname()[1])
        self.arrivals: list[tuple[float, bytes]] = []
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while data := conn.recv(1 << 20):
                self.arrivals.append((time.perf_counter(), data))
        self.done.set()

    def received(self) -> bytes:
        return b"".join(data for _, data in self.arrivals)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def sink() -> Iterator[_Sink]:
    server = _Sink()
    yield server
    server.close()


def _relay_to(sink: _Sink, uplink: DirectionSpec, **options: object) -> RelayThread:
    return RelayThread(DelayRelay(Endpoint("127.0.0.1", 0), sink.endpoint, uplink, **options))


def _one_way_ms(sink: _Sink, relay: RelayThread, messages: int) -> list[float]:
    """Send 64-byte messages every 20 ms through `relay` to `sink`; their one-way delays."""
    with relay as running, socket.create_connection(("127.0.0.1", running.relay.port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = []
        for _ in range(messages):
            sent.append(time.perf_counter())
            conn.sendall(b"x" * 64)
            time.sleep(0.02)
        conn.shutdown(socket.SHUT_WR)
        assert sink.done.wait(5)
    arrivals = [t for t, data in sink.arrivals for _ in range(len(data) // 64)]
    return [(a - s) * 1000 for a, s in zip(arrivals, sent, strict=True)]


def test_one_way_delay_per_message_at_50_ms(sink: _Sink, tmp_path: Path) -> None:
    log = tmp_path / "link.jsonl"
    end_to_end = _one_way_ms(sink, _relay_to(sink, _delay(50.0), log_path=log), 40)
    measured = [json.loads(line)["measured_delay_ms"] for line in log.open()]
    median, total = statistics.median(measured), statistics.median(end_to_end)
    print(f"one-way at 50 ms: relay read-to-write median {median:.2f} ms, "
          f"sender-to-receiver median {total:.2f} ms (includes loopback and wake-ups)")  # fmt: skip
    assert abs(median - 50.0) <= 1.0
    assert 50.0 <= total <= 53.0


def test_jitter_larger_than_the_mean_never_reorders_bytes(sink: _Sink, tmp_path: Path) -> None:
    jittery = DirectionSpec(DelaySpec(5.0, 20.0, "paretonormal"))
    payload = b"".join(i.to_bytes(4, "big") for i in range(20_000))
    with (
        _relay_to(sink, jittery, seed=3, log_path=tmp_path / "link.jsonl") as running,
        socket.create_connection(("127.0.0.1", running.relay.port)) as conn,
    ):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(payload), 400):
            conn.sendall(payload[start : start + 400])
            time.sleep(0.001)
        conn.shutdown(socket.SHUT_WR)
        assert sink.done.wait(10)
    assert sink.received() == payload
    chunks = [json.loads(line) for line in (tmp_path / "link.jsonl").open()]
    sampled = [c["sampled_delay_ms"] for c in chunks]
    assert min(sampled) == 0.0 and max(sampled) > 40.0  # the jitter really exceeded the mean
    assert all(c["applied_delay_ms"] >= c["sampled_delay_ms"] - 1e-3 for c in chunks)


def _bulk_rate_mbit(sink: _Sink, spec: DirectionSpec, size: int) -> float:
    payload = bytes(i % 251 for i in range(size))
    with (
        _relay_to(sink, spec) as running,
        socket.create_connection(("127.0.0.1", running.relay.port)) as conn,
    ):
        start = time.perf_counter()
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        assert sink.done.wait(30)
    assert sink.received() == payload
    return size * 8 / (sink.arrivals[-1][0] - start) / 1e6


def test_bandwidth_cap_of_20_mbit(sink: _Sink) -> None:
    rate = _bulk_rate_mbit(sink, DirectionSpec(rate_mbit=20.0), 6_000_000)
    print(f"bulk transfer through a 20 Mbit/s cap: {rate:.2f} Mbit/s")
    assert abs(rate / 20.0 - 1) <= 0.05


def test_mahimahi_trace_replay_reproduces_its_throughput(sink: _Sink, tmp_path: Path) -> None:
    trace = tmp_path / "cell.up"
    trace.write_text("".join(f"{ms}\n" * (2 if ms % 2 == 0 else 1) for ms in range(1, 21)))
    expected = 30 * 1500 * 8 / 0.020 / 1e6  # 30 packets every 20 ms: 18 Mbit/s
    rate = _bulk_rate_mbit(sink, DirectionSpec(trace=trace), 3_000_000)
    print(f"trace replay: {rate:.2f} Mbit/s, trace mean {expected:.2f} Mbit/s")
    assert abs(rate / expected - 1) <= 0.05


def test_a_loss_stall_delays_the_chunk_by_one_rto(sink: _Sink) -> None:
    lossy = DirectionSpec(DelaySpec(10.0), loss=LossSpec(stall_probability=1.0, rto_ms=100.0))
    with (
        _relay_to(sink, lossy) as running,
        socket.create_connection(("127.0.0.1", running.relay.port)) as conn,
    ):
        start = time.perf_counter()
        conn.sendall(b"x" * 64)
        conn.shutdown(socket.SHUT_WR)
        assert sink.done.wait(5)
    assert 109.0 <= (sink.arrivals[0][0] - start) * 1000 <= 130.0


def test_connection_drops_cut_the_stream(echo_server: Endpoint) -> None:
    flaky = DirectionSpec(DelaySpec(1.0), loss=LossSpec(drops_per_minute=6_000.0))  # 100/s
    relay = DelayRelay(Endpoint("127.0.0.1", 0), echo_server, flaky)
    closed = False
    with (
        RelayThread(relay) as running,
        socket.create_connection(("127.0.0.1", running.relay.port)) as conn,
    ):
        conn.settimeout(0.5)
        deadline = time.monotonic() + 5.0
        while not closed and time.monotonic() < deadline:
            try:
                conn.sendall(b"y" * 32)
                closed = conn.recv(4096) == b""
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            except TimeoutError:
                continue
            time.sleep(0.005)
    assert closed


def test_condition_trace_changes_the_delay_mid_stream(sink: _Sink, tmp_path: Path) -> None:
    csv = tmp_path / "conditions.csv"
    csv.write_text("time_s,delay_ms,bandwidth_mbit\n0,20,\n0.6,60,\n")
    one_way = _one_way_ms(sink, _relay_to(sink, DirectionSpec(conditions=csv)), 60)
    first, last = statistics.median(one_way[:20]), statistics.median(one_way[-20:])
    assert 19.0 <= first <= 20.0 + SCHEDULING_SLACK_MS
    assert 59.0 <= last <= 60.0 + SCHEDULING_SLACK_MS
