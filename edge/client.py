"""`EdgeClient`: the edge as a call a video pipeline makes once per frame.

Each `step(frame)` offers the frame to the uplink (never blocks), reads the freshest answer
(never blocks), combines it with the local model when it is fresh enough (the combiner's
record for its age D_o), otherwise runs local-only, and says how the output was made. Delays
are measured in source frames (D_o = t - source frame) and converted to ticks of the model's
frame rate for the D_i policy and the per-age record. Whoever calls `step` owns the loop:
a ROS callback, a GStreamer appsink, a camera SDK, or the `splitcast edge` command.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from splitcast.edge.connection import (
    CONNECTED,
    CONNECTING,
    INCOMPATIBLE,
    UNREACHABLE,
    CloudConnection,
    LinkStats,
)
from splitcast.edge.credentials import ClientSecurity
from splitcast.edge.delay import DelayPolicy
from splitcast.edge.model import EdgeModel, open_edge_model
from splitcast.edge.slots import OutgoingFrame, ReceivedAnswer
from splitcast.models.answers import AS_SENT
from splitcast.models.runtime_names import RUNTIMES

if TYPE_CHECKING:
    from splitcast.models.registry import SplitSystem

MODES = ("combined", "stale", "local_only")
"""How an output was made: with a fresh answer, with a stream to the server whose answers are
all too old to use, or with no answer to use at all (`CAUSES` says why)."""

NO_SERVER, NO_ANSWER_YET, ANSWER_TOO_OLD = "no_server", "no_answer_yet", "answer_too_old"
CAUSES = (NO_SERVER, CONNECTING, UNREACHABLE, INCOMPATIBLE, NO_ANSWER_YET, ANSWER_TOO_OLD)
"""Why a frame used no answer: no server configured, the stream not up yet or down (the
server unreachable or running another model), streaming but no answer yet, or the freshest
answer older than the staleness limit (by default the model's answer horizon)."""


REMOTE_PANELS = {"remote answer, used late": "on_time", "remote forecast": "forecast"}
"""Comparison panels from the server's answer: its tensor for the answer's own frame (what a
system without forecasting shows, late) and the forecast for now."""
LOCAL_PANEL = "local only"
PANELS = (*REMOTE_PANELS, LOCAL_PANEL)


def horizon_frames(horizon_ticks: float, ticks_per_frame: float) -> int:
    """The oldest answer age in source frames that is still inside a horizon in ticks."""
    return int(horizon_ticks / ticks_per_frame + 1e-9)


@dataclass(frozen=True)
class EdgeResult:
    """One frame's output and how it was made."""

    frame: int
    """The frame's sequence number t (the caller's, or counted by the client from 0)."""
    class_ids: np.ndarray
    """uint8 [H, W] at the requested output size."""
    mode: str
    """One of `MODES`."""
    cause: str | None
    """Why no answer was used (one of `CAUSES`; None when one was)."""
    latency_ms: float
    """Time of the on-time step: uplink offer, answer read, local model, combine, argmax."""
    capture_time_ns: int
    source_frame: int | None
    """The frame the freshest answer was computed from (None: no answer yet)."""
    d_o: int | None
    """The answer's true age D_o = t - source_frame, in frames."""
    d_i: float | None
    """The delay (ticks of the model's frame rate) the answer was conditioned on."""
    requested_d_i: float
    """The D_i this frame asked the server for."""
    context_frames: tuple[int, ...] | None
    rtt_ms: float | None
    """Capture-to-arrival time of the freshest answer."""
    server_ms: float | None
    """From the answer's frame reaching the server to the answer leaving it."""
    connected: bool
    panels: dict[str, np.ndarray | None] | None = None
    """With `EdgeClient(panels=True)`: class ids of what the comparison shows beside the
    output (`PANELS`; None where the server's answer carries no such tensor, or none came)."""

    def record(self, frame_ms: float) -> dict[str, Any]:
        """The JSON-lines log record of this frame (`frame_ms`: the source's frame period)."""
        return {
            "frame": self.frame,
            "capture_time_ns": self.capture_time_ns,
            "latency_ms": round(self.latency_ms, 3),
            "mode": self.mode,
            "cause": self.cause,
            "source_frame": self.source_frame,
            "context_frames": None if self.context_frames is None else list(self.context_frames),
            "d_o": self.d_o,
            "d_o_ms": None if self.d_o is None else round(self.d_o * frame_ms, 1),
            "d_i": self.d_i,
            "requested_d_i": self.requested_d_i,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2),
            "connected": self.connected,
        }


class EdgeClient:
    """The edge of a split system: local model every frame, the server's answers when fresh.

    A context manager: the connection to `server` (host:port; None runs local-only), with
    `security` (TLS, a client certificate, a bearer token; None: plaintext), starts on entry
    and stops on exit. `fps` is the rate frames arrive at (default: the model's), used
    to turn D_o in frames into ticks; answers older than `max_staleness_frames` (default: the
    model's answer horizon) are not used.
    """

    def __init__(
        self,
        model: SplitSystem | EdgeModel | str | Path,
        server: str | None = None,
        security: ClientSecurity | None = None,
        fps: float | None = None,
        runtime: str = RUNTIMES[0],
        max_staleness_frames: int | None = None,
        initial_delay_ticks: float | None = None,
        output_size: tuple[int, int] | None = None,
        providers: Sequence[str] = ("cpu",),
        device: str = "auto",
        precision: str | None = None,
        panels: bool = False,
    ) -> None:
        """`model`: a `SplitSystem`, a checkpoint's name or folder, an export folder (runs
        without PyTorch, `splitcast.edge.exported`) or an `EdgeModel`; `initial_delay_ticks`:
        D_i asked for before any delay is measured (default: the
        staleness limit, the worst delay still used); `output_size`: (height, width) of the
        class ids (default: the local model's input size); `providers`: ONNX Runtime's
        execution providers for the local model, in order of preference (cuda, tensorrt, cpu;
        one this onnxruntime lacks is an error); `device` and `precision`: where and how the
        PyTorch runtime runs it (`splitcast.models.devices`; a device that is absent is an
        error whatever the runtime); `panels`: also return what the comparison video shows
        (`EdgeResult.panels`)."""
        if not hasattr(model, "segment"):  # a SplitSystem or a path, not an EdgeModel yet
            model = open_edge_model(model, runtime, providers, device, precision)
        self.model: EdgeModel = model
        model_fps = model.expected.fps
        self.fps = float(fps or model_fps)
        self.ticks_per_frame = model_fps / self.fps
        if max_staleness_frames is None:
            max_staleness_frames = horizon_frames(model.horizon_ticks, self.ticks_per_frame)
        self.max_staleness_frames = max_staleness_frames
        # motion since an answer's frame is measured for every answer still used
        model.history.size = max(model.history.size, max_staleness_frames + 1)
        self.output_size = output_size
        self.panels = panels
        if initial_delay_ticks is None:
            initial_delay_ticks = max_staleness_frames * self.ticks_per_frame
        self.policy = DelayPolicy(initial_ticks=initial_delay_ticks)
        self.connection = None
        if server:
            self.connection = CloudConnection(
                server, model.expected, model.codecs, security=security
            )
        self._next_frame = 0
        self._last_source = -1
        self._remote_panels: tuple[int | None, dict[str, np.ndarray | None]] | None = None
        self._warm_up()

    def __enter__(self) -> EdgeClient:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        if self.connection is not None:
            self.connection.start()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.stop()

    @property
    def local_runtime(self) -> str:
        """What runs the local model, and where (e.g. the providers ONNX Runtime uses)."""
        return self.model.describe()

    @property
    def stats(self) -> LinkStats | None:
        """The connection's counters (None without a server)."""
        return None if self.connection is None else self.connection.stats

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the stream to the server to be up; whether it is."""
        deadline = time.monotonic() + timeout_s
        while self.stats is not None and not self.stats.connected:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return self.stats is not None

    def step(
        self,
        frame_rgb: np.ndarray,
        capture_time_ns: int | None = None,
        sequence: int | None = None,
    ) -> EdgeResult:
        """The output for one RGB uint8 frame [H, W, 3]; never waits for the network.
        `sequence`: the frame's number in its source (default: one more than the last), so
        that frames a caller skips still count in D_o."""
        index = self._next_frame if sequence is None else sequence
        self._next_frame = index + 1
        capture_ns = time.time_ns() if capture_time_ns is None else capture_time_ns
        start = time.perf_counter()
        requested = self.policy.requested()
        received = self._exchange(index, capture_ns, frame_rgb, requested)
        d_o = None if received is None else index - received.source_sequence
        fresh = d_o is not None and d_o <= self.max_staleness_frames
        use = self.model.use_at(d_o * self.ticks_per_frame) if fresh else AS_SENT
        class_ids = self.model.segment(
            frame_rgb,
            received.tensors if fresh else None,
            self.output_size,
            use,
            index,
            None if received is None else received.source_sequence,
        )
        cause = None if fresh else self._cause(received)
        return EdgeResult(
            frame=index,
            class_ids=class_ids,
            mode=MODES[0] if fresh else (MODES[1] if cause == ANSWER_TOO_OLD else MODES[2]),
            cause=cause,
            latency_ms=(time.perf_counter() - start) * 1000.0,
            capture_time_ns=capture_ns,
            source_frame=None if received is None else received.source_sequence,
            d_o=d_o,
            d_i=None if received is None else received.conditioned_delay_ticks,
            requested_d_i=requested,
            context_frames=None if received is None else received.context_sequences,
            rtt_ms=None if received is None else received.round_trip_ms,
            server_ms=None if received is None else received.server_ms,
            connected=bool(self.stats and self.stats.connected),
            panels=self._panels(received) if self.panels else None,
        )

    def _cause(self, received: ReceivedAnswer | None) -> str:
        """Why the freshest answer is not used: the link's state when it is down, else its
        age (an answer kept from before an outage is not called stale: the link is the cause)."""
        if self.stats is None:
            return NO_SERVER
        if self.stats.state != CONNECTED:
            return self.stats.state
        return NO_ANSWER_YET if received is None else ANSWER_TOO_OLD

    def _panels(self, received: ReceivedAnswer | None) -> dict[str, np.ndarray | None]:
        """The latest answer's tensors as class ids (log-probabilities: the late average's),
        whatever their age, and the frame's local-only output. An answer's panels are made
        once, when it first comes: answers change a few times a second, frames thirty."""
        source = None if received is None else received.source_sequence
        if self._remote_panels is None or self._remote_panels[0] != source:
            tensors = {} if received is None else received.tensors
            self._remote_panels = (
                source,
                {
                    panel: self.model.ids(tensors[name], self.output_size)
                    if name in tensors
                    else None
                    for panel, name in REMOTE_PANELS.items()
                },
            )
        return {**self._remote_panels[1], LOCAL_PANEL: self.model.local_only_ids(self.output_size)}

    def _exchange(
        self, index: int, capture_ns: int, rgb: np.ndarray, requested: float
    ) -> ReceivedAnswer | None:
        """Offer the frame to the uplink and read the freshest answer; a new answer's age
        feeds the delay policy."""
        if self.connection is None:
            return None
        self.connection.submit(OutgoingFrame(index, capture_ns, rgb, requested))
        received = self.connection.answers.latest()
        if received is not None and received.source_sequence != self._last_source:
            self.policy.observe((index - received.source_sequence) * self.ticks_per_frame)
            self._last_source = received.source_sequence
        return received

    def _warm_up(self) -> None:
        """First calls allocate and pick kernels; keep that out of frame latencies."""
        expected = self.model.expected
        blank = np.zeros((*expected.local_size, 3), dtype=np.uint8)
        zeros = {t.name: np.zeros((1, *t.shape), np.float32) for t in expected.tensors}
        for _ in range(2):
            self.model.segment(blank, None)
            self.model.segment(blank, zeros, use=self.model.use_at(0.0))
