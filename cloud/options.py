"""What `splitcast serve` is told: where to listen, whom to serve, how many at once.
Importable without PyTorch (the command line builds it before loading a model)."""

from __future__ import annotations

from dataclasses import dataclass

from splitcast.cloud.security import TlsFiles

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_STREAMS = 32
DEFAULT_DRAIN_S = 5.0
DEFAULT_MAX_STREAM_FPS = 60.0
DEFAULT_IDLE_TIMEOUT_S = 120.0
DEFAULT_MAX_CONNECTION_AGE_S = 1800.0
GPU_MAX_BATCH = 8
"""Frames stepped together on a GPU unless told otherwise (on a CPU batching gains nothing:
the model's time grows with the batch, so the default there is 1)."""
DEFAULT_MAX_WAIT_S = 0.005
CLIENT_PING_INTERVAL_MIN_S = 10.0
"""Clients may ping this often without data (the edge pings every 20 s, well above)."""
SERVER_PING_INTERVAL_S = 30.0
PING_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ServeOptions:
    """Where a server listens, whom it serves and how many at once."""

    host: str = "127.0.0.1"
    port: int = 0
    """0: any free port."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls: TlsFiles | None = None
    """TLS (and mutual TLS with a client CA); the server then listens on TLS only."""
    token: str | None = None
    """The bearer token every call must carry (`splitcast.cloud.security.TokenCheck`)."""
    open_health: bool = False
    """Health checking answers without the token (for load balancers)."""
    max_streams: int = DEFAULT_MAX_STREAMS
    """Edge streams served at once; one more is refused with RESOURCE_EXHAUSTED."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port of `host` (0: any free port; None: not at all)."""
    drain_s: float = DEFAULT_DRAIN_S
    """On shutdown, how long open calls get to end after the drain (then they are cancelled)."""
    max_batch: int | None = None
    """Streams' frames stepped together at most (None: `GPU_MAX_BATCH` on a GPU, else 1)."""
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    """How long a batch waits for more streams' frames after its first (never longer)."""
    max_stream_fps: float = DEFAULT_MAX_STREAM_FPS
    """Uplink frames read per second per stream (0: no limit); a faster sender waits."""
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    """A stream that sends no frame this long is closed (UNAVAILABLE; the edge reconnects)."""
    max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S
    """Connections are told to go away after this long (then get `drain_s` to finish), so
    edges reconnect and spread over replicas added since."""


def keepalive_options(options: ServeOptions) -> list[tuple[str, int]]:
    """gRPC server settings for long-lived streams behind proxies: it pings idle clients,
    accepts clients' pings down to `CLIENT_PING_INTERVAL_MIN_S` apart (fewer would be
    refused as too_many_pings), and ages connections out."""
    return [
        ("grpc.keepalive_time_ms", int(SERVER_PING_INTERVAL_S * 1000)),
        ("grpc.keepalive_timeout_ms", int(PING_TIMEOUT_S * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", int(CLIENT_PING_INTERVAL_MIN_S * 1000)),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_connection_age_ms", int(options.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(options.drain_s * 1000)),
    ]
