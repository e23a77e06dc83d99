"""The server's Prometheus metrics (prometheus-client), in a registry of its own per server.

Labels take values from fixed sets (a frame's rejection reason, an error's kind, why a call
was refused), never a peer's address or a stream's id, so the number of series stays bounded
however many edges connect. `serve_http` exposes them on `/metrics` for a scraper.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


class ServerMetrics:
    """Everything `splitcast serve` counts and times (names start with `splitcast_`)."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU, open fds
        self.active_streams = Gauge(
            "splitcast_active_streams", "Edge streams open now.", registry=registry
        )
        self.frames_received = Counter(
            "splitcast_frames_received", "Uplink frames received.", registry=registry
        )
        self.frames_answered = Counter(
            "splitcast_frames_answered", "Frames answered.", registry=registry
        )
        self.frames_dropped = Counter(
            "splitcast_frames_dropped",
            "Frames replaced by a newer one of their stream before the model saw them.",
            registry=registry,
        )
        self.frames_rejected = Counter(
            "splitcast_frames_rejected",
            "Frames answered with a FrameError, by reason.",
            ["reason"],
            registry=registry,
        )
        self.calls_refused = Counter(
            "splitcast_calls_refused",
            "Calls refused before any work, by reason (unauthenticated, max_streams, draining).",
            ["reason"],
            registry=registry,
        )
        self.errors = Counter(
            "splitcast_errors", "Streams ended by an error, by kind.", ["kind"], registry=registry
        )
        self.queue_wait = Histogram(
            "splitcast_queue_wait_seconds",
            "From a frame's arrival to the model starting on it.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_step = Histogram(
            "splitcast_model_step_seconds",
            "The model's step on one batch (encoder, temporal model, heads).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "splitcast_batch_size",
            "Streams stepped together in one model step.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.answer_age = Histogram(
            "splitcast_answer_age_at_send_seconds",
            "From a frame's arrival to its answer leaving.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.uplink_bytes = Counter(
            "splitcast_uplink_bytes", "Encoded image bytes received.", registry=registry
        )
        self.downlink_bytes = Counter(
            "splitcast_downlink_bytes", "Answer payload bytes sent.", registry=registry
        )
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve_http(self, host: str, port: int) -> int:
        """Serve `/metrics` on `host`:`port` (0: any free port) in a thread; the bound port."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
