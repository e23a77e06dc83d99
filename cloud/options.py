"""What `splitcast serve` is told: where to listen, whom to serve, how many at once.
Importable without PyTorch (the command line builds it before loading a model)."""

from __future__ import annotations

from dataclasses import dataclass

from splitcast.cloud.security import TlsFiles

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_STREAMS = 32
DEFAULT_DRAIN_S = 5.0


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
