"""`splitcast edge`: a frame source driven through an `EdgeClient`, paced like a camera, with
its outputs written to a log, an overlay video and a summary.

Every frame gets an on-time output, whatever the network does (see `splitcast.edge.client`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from splitcast.edge.client import EdgeClient, EdgeResult
from splitcast.edge.connection import LinkStats
from splitcast.edge.credentials import ClientSecurity
from splitcast.edge.model import EdgeModel
from splitcast.edge.sinks import (
    MAX_PENDING_FRAMES,
    BackgroundVideo,
    JsonlLog,
    OverlayVideoWriter,
)
from splitcast.edge.sources import FrameSource, read_ahead
from splitcast.models.runtime_names import RUNTIMES
from splitcast.signals import interrupts_deferred, signal_name

MAX_VIDEO_WIDTH = 960


@dataclass
class EdgeOptions:
    """How the edge runs; defaults work offline on a laptop."""

    model: str | EdgeModel = "default"
    """A checkpoint's name or folder, an export folder (`splitcast export`), or a model
    already open (`splitcast.edge.model.open_edge_model`)."""
    runtime: str = RUNTIMES[0]
    """What runs the local model: one of `splitcast.models.runtime_names.RUNTIMES`."""
    providers: tuple[str, ...] = ("cpu",)
    """ONNX Runtime execution providers in order of preference (cuda, tensorrt, cpu)."""
    device: str = "auto"
    """Where the PyTorch runtime runs the local model (`splitcast.models.devices`)."""
    precision: str | None = None
    server: str | None = None
    security: ClientSecurity | None = None
    """TLS and token for the server (None: plaintext, no token)."""
    realtime: bool = True
    max_staleness_frames: int | None = None
    """Answers older than this many frames are not used; None: the model's answer horizon."""
    initial_delay_ticks: float | None = None
    """D_i before any delay is measured; None: the staleness limit, the worst delay still used."""
    wait_for_server_s: float = 0.0
    """How long to wait for the stream to the server before the first frame."""
    video_path: Path | None = None
    log_path: Path | None = None
    banner: str = ""
    progress: bool = True
    output_size: tuple[int, int] | None = None
    panels: bool = False
    """The video as the four-panel comparison (`splitcast.edge.sinks.OverlayVideoWriter`)."""
    on_output: Callable[[dict[str, Any], np.ndarray], None] | None = None


@dataclass
class EdgeSummary:
    """What one edge run did (written as JSON by the CLI and the demo)."""

    source: str
    local_runtime: str
    """What ran the local model: ONNX Runtime and the providers its session used, or PyTorch
    and its device."""
    frames: int
    skipped: int
    combined: int
    """Frames whose output used a fresh answer."""
    combined_fraction: float
    mean_d_o_frames: float | None
    mean_d_o_ms: float | None
    stale: int
    """Frames streaming to the server whose freshest answer was too old to use (older than
    the cap: the answer horizon unless told otherwise)."""
    stale_d_o_p50_frames: float | None
    max_staleness_frames: int
    server_time_p50_ms: float | None
    """From an answered frame reaching the server to its answer leaving (queue and step): the
    usual cause of stale answers when the link itself is fast."""
    latency_p50_ms: float
    latency_p99_ms: float
    output_fps: float
    duration_s: float
    uplink_kbps: float
    downlink_kbps: float
    causes: dict[str, int] = field(default_factory=dict)
    """Frames that used no answer, by why (`splitcast.edge.client.CAUSES`)."""
    stopped_by: str | None = None
    """SIGINT or SIGTERM when the run was stopped before its source ended."""
    link: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _video_size(rgb: np.ndarray, columns: int = 1) -> tuple[int, int]:
    """One panel's size: the frame's, scaled down so `columns` panels fit the video width."""
    height, width = rgb.shape[:2]
    scale = min(1.0, MAX_VIDEO_WIDTH / columns / width)
    return int(width * scale) // 2 * 2, int(height * scale) // 2 * 2


def run_edge(source: FrameSource, options: EdgeOptions) -> EdgeSummary:
    """Process every frame of `source` through an `EdgeClient`; returns the run's summary."""
    client = EdgeClient(
        options.model,
        server=options.server,
        security=options.security,
        fps=source.fps,
        runtime=options.runtime,
        max_staleness_frames=options.max_staleness_frames,
        initial_delay_ticks=options.initial_delay_ticks,
        output_size=options.output_size,
        providers=options.providers,
        device=options.device,
        precision=options.precision,
        panels=options.panels and options.video_path is not None,
    )
    frame_ms = 1000.0 / source.fps
    sinks = _Sinks(options, source.fps, _frames_held(source))
    run = _RunRecord(client.max_staleness_frames)
    frames = source.frames() if source.live else read_ahead(source.frames())
    progress = tqdm(
        desc="edge",
        unit="frame",
        total=source.num_frames,
        disable=not options.progress,
        leave=False,
    )
    start = time.perf_counter()
    try:
        with client:
            if options.server:
                client.wait_connected(options.wait_for_server_s)
            start = time.perf_counter()
            for index, rgb in enumerate(frames):
                paced = options.realtime and not source.live  # a camera paces itself
                if paced and not on_time(start, index, source.fps):
                    run.skipped += 1
                    continue
                result = client.step(rgb, sequence=index)
                with interrupts_deferred():  # a frame is in the summary, log and video, or none
                    run.add(result)
                    sinks.write(rgb, result, result.record(frame_ms), options.banner)
                progress.update()
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM: keep and summarise what was done
        run.stopped_by = signal_name(interrupt)
    finally:
        elapsed = time.perf_counter() - start  # the video's last frames are drawn after this
        if isinstance(frames, Generator):  # stops a read-ahead thread, releases a capture
            frames.close()
        progress.close()
        sinks.close()
    run.skipped += source.dropped
    return _summarise(source, run, frame_ms, elapsed, client.stats, client.local_runtime)


def _frames_held(source: FrameSource) -> int:
    """How many frames the video keeps before drawing: all of a short recorded source's (its
    video is drawn after the run), none of a camera's or a long source's."""
    count = source.num_frames
    return count if count and not source.live and count < MAX_PENDING_FRAMES else 0


def on_time(start: float, index: int, fps: float) -> bool:
    """Pace to the source's frame rate as a camera would: sleep until frame `index` is due;
    False when it is more than a frame period late (skip it)."""
    lateness = time.perf_counter() - (start + index / fps)
    if lateness > 1.0 / fps:
        return False
    if lateness < 0:
        time.sleep(-lateness)
    return True


class _Sinks:
    """Where each frame's output goes: the JSON-lines log, the overlay video, a callback."""

    def __init__(self, options: EdgeOptions, fps: float, hold_frames: int) -> None:
        """`hold_frames`: frames the video keeps before it starts drawing (all of a short
        source's, which are then drawn after the run)."""
        self.options = options
        self.fps = fps
        self.hold_frames = hold_frames
        self.log = JsonlLog(options.log_path) if options.log_path else None
        self.video: BackgroundVideo | None = None
        self.recent_outputs: list[float] = []

    def write(
        self, rgb: np.ndarray, result: EdgeResult, record: dict[str, Any], banner: str
    ) -> None:
        self.recent_outputs = [*self.recent_outputs[-29:], time.perf_counter()]
        if self.log is not None:
            self.log.write(record)
        if self.options.on_output is not None:
            self.options.on_output(record, result.class_ids)
        if self.options.video_path is not None:
            if self.video is None:
                self.video = BackgroundVideo(
                    OverlayVideoWriter(
                        self.options.video_path,
                        self.fps,
                        *_video_size(rgb, 2 if self.options.panels else 1),
                        panels=self.options.panels,
                    ),
                    hold=self.hold_frames,
                )
            self.video.write(
                (rgb, result.class_ids, _banner(banner, self.recent_outputs, result), result.panels)
            )

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        if self.video is not None:
            pending = self.video.pending
            if self.options.progress and pending > self.fps:  # a wait worth a word
                print(f"edge: writing the last {pending} frames of {self.video.path}", flush=True)
            self.video.close()


def _banner(prefix: str, outputs: list[float], result: EdgeResult) -> str:
    fps = (len(outputs) - 1) / (outputs[-1] - outputs[0]) if len(outputs) > 1 else 0.0
    state = (
        f"ANSWER D_o={result.d_o} D_i={result.d_i:g}"
        if result.mode == "combined" and result.d_i is not None
        else result.mode.upper().replace("_", "-")
    )
    return " | ".join(part for part in (prefix, f"{fps:4.1f} fps", state) if part)


@dataclass
class _RunRecord:
    """What the run saw: on-time step latencies, the answers' ages D_o (used, and too stale),
    the server's time per new answer, and frames skipped as too late."""

    max_staleness: int
    latencies: list[float] = field(default_factory=list)
    combined: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    causes: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    last_source: int | None = None
    stopped_by: str | None = None

    def add(self, result: EdgeResult) -> None:
        self.latencies.append(result.latency_ms)
        if result.cause is not None:
            self.causes[result.cause] += 1
        if result.mode == "combined":
            self.combined.append(result.d_o)
        elif result.mode == "stale":
            self.stale.append(result.d_o)
        if result.source_frame is not None and result.source_frame != self.last_source:
            self.server_ms.append(result.server_ms)
            self.last_source = result.source_frame


def _median(values: list[float] | list[int]) -> float | None:
    return float(np.median(values)) if values else None


def _summarise(
    source: FrameSource,
    run: _RunRecord,
    frame_ms: float,
    elapsed: float,
    stats: LinkStats | None,
    local_runtime: str,
) -> EdgeSummary:
    latencies = run.latencies
    frames = len(latencies)
    mean_d_o = float(np.mean(run.combined)) if run.combined else None
    return EdgeSummary(
        source=source.name,
        local_runtime=local_runtime,
        frames=frames,
        skipped=run.skipped,
        combined=len(run.combined),
        combined_fraction=len(run.combined) / frames if frames else 0.0,
        mean_d_o_frames=mean_d_o,
        mean_d_o_ms=None if mean_d_o is None else mean_d_o * frame_ms,
        stale=len(run.stale),
        stale_d_o_p50_frames=_median(run.stale),
        max_staleness_frames=run.max_staleness,
        server_time_p50_ms=_median(run.server_ms),
        latency_p50_ms=float(np.percentile(latencies, 50)) if frames else 0.0,
        latency_p99_ms=float(np.percentile(latencies, 99)) if frames else 0.0,
        output_fps=frames / elapsed if elapsed > 0 else 0.0,
        duration_s=elapsed,
        uplink_kbps=_kbps(stats.uplink_bytes if stats else 0, elapsed),
        downlink_kbps=_kbps(stats.downlink_bytes if stats else 0, elapsed),
        causes=dict(run.causes),
        stopped_by=run.stopped_by,
        link=asdict(stats) if stats is not None else {},
    )


def _kbps(num_bytes: int, seconds: float) -> float:
    return num_bytes * 8 / seconds / 1000.0 if seconds > 0 else 0.0
