"""The on-device loop: every frame gets an on-time output, whatever the network does.

Per frame: offer it to the uplink (never blocks), read the freshest downlink (never blocks),
use it at the model's weight for its age (features fused with a gain, or log-probabilities
pooled: `splitcast.models.downlink`) when it is fresh enough, otherwise run local-only, and
log what happened. Delays are measured in source frames (D_o = t - source frame) and converted
to ticks of the model's frame rate for the D_i policy and the weight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from splitcast.edge.connection import CloudConnection, LinkStats
from splitcast.edge.delay import DelayPolicy
from splitcast.edge.runtime import LocalRuntime
from splitcast.edge.sinks import JsonlLog, OverlayVideoWriter
from splitcast.edge.slots import OutgoingFrame, ReceivedFeatures
from splitcast.edge.sources import FrameSource
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import codec_set
from splitcast.models.downlink import (
    AS_SENT,
    downlink_shape,
    downlink_use,
    is_late_average,
)
from splitcast.models.runtime_names import RUNTIMES

MAX_VIDEO_WIDTH = 960


@dataclass
class EdgeOptions:
    """How the edge runs; defaults work offline on a laptop."""

    model: str = "default"
    runtime: str = RUNTIMES[0]
    """What runs the local model: one of `splitcast.models.runtime_names.RUNTIMES`."""
    server: str | None = None
    realtime: bool = True
    max_staleness_frames: int = 10
    image_format: str = "jpeg"
    quality: int = 90
    initial_delay_ticks: float | None = None
    """D_i before any delay is measured; None: the staleness limit, the worst delay still fused."""
    wait_for_server_s: float = 0.0
    video_path: Path | None = None
    log_path: Path | None = None
    banner: str = ""
    progress: bool = True
    output_size: tuple[int, int] | None = None
    on_output: Callable[[dict[str, Any], np.ndarray], None] | None = None


@dataclass
class EdgeSummary:
    """What one edge run did (written as JSON by the CLI and the demo)."""

    source: str
    frames: int
    skipped: int
    fused: int
    fused_fraction: float
    mean_d_o_frames: float | None
    mean_d_o_ms: float | None
    stale: int
    """Frames that had features but not fresh enough to fuse (older than the cap)."""
    stale_d_o_p50_frames: float | None
    max_staleness_frames: int
    server_time_p50_ms: float | None
    """From an answered frame reaching the server to its answer leaving (queue and step): the
    usual cause of stale features when the link itself is fast."""
    latency_p50_ms: float
    latency_p99_ms: float
    output_fps: float
    duration_s: float
    uplink_kbps: float
    downlink_kbps: float
    link: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _video_size(rgb: np.ndarray) -> tuple[int, int]:
    height, width = rgb.shape[:2]
    scale = min(1.0, MAX_VIDEO_WIDTH / width)
    return int(width * scale) // 2 * 2, int(height * scale) // 2 * 2


def run_edge(source: FrameSource, options: EdgeOptions) -> EdgeSummary:
    """Process every frame of `source`; returns the run's summary."""
    system = load_system(options.model)
    config = system.config
    runtime = LocalRuntime(
        system.local,
        config.local_size,
        runtime=options.runtime,
        late_average=is_late_average(config),
        history_frames=options.max_staleness_frames + 1,
    )
    feature_shape = downlink_shape(system)
    _warm_up(runtime, feature_shape)
    connection = None
    if options.server:
        connection = CloudConnection(
            options.server,
            config,
            feature_shape,
            codec_set(system.bottleneck),
            options.image_format,
            options.quality,
        )
        connection.start()
        _wait_connected(connection.stats, options.wait_for_server_s)
    ticks_per_frame = config.fps / source.fps
    initial_ticks = options.initial_delay_ticks
    if initial_ticks is None:
        initial_ticks = options.max_staleness_frames * ticks_per_frame
    policy = DelayPolicy(initial_ticks=initial_ticks)
    frame_ms = 1000.0 / source.fps
    log = JsonlLog(options.log_path) if options.log_path else None
    video: OverlayVideoWriter | None = None
    latencies: list[float] = []
    fused_delays: list[int] = []
    stale_delays: list[int] = []
    server_ms: list[float] = []
    recent_outputs: list[float] = []
    skipped = 0
    last_source = -1
    start = time.perf_counter()
    progress = tqdm(
        desc="edge",
        unit="frame",
        total=source.num_frames,
        disable=not options.progress,
        leave=False,
    )
    try:
        for index, rgb in enumerate(source.frames()):
            if options.realtime:
                lateness = time.perf_counter() - (start + index / source.fps)
                if lateness > 1.0 / source.fps:
                    skipped += 1
                    continue
                if lateness < 0:
                    time.sleep(-lateness)
            capture_ns = time.time_ns()
            step_start = time.perf_counter()
            requested = policy.requested()
            received = None
            if connection is not None:
                connection.submit(OutgoingFrame(index, capture_ns, rgb, requested))
                received = connection.features.latest()
            d_o = None if received is None else index - received.source_sequence
            if received is not None and received.source_sequence != last_source:
                policy.observe(d_o * ticks_per_frame)
                server_ms.append(received.server_ms)
                last_source = received.source_sequence
            fused = d_o is not None and d_o <= options.max_staleness_frames
            downlink = received.features if fused else None
            use = downlink_use(config, d_o * ticks_per_frame) if fused else AS_SENT
            answered = None if received is None else received.source_sequence
            class_ids = runtime.segment(rgb, downlink, options.output_size, use, index, answered)
            latency_ms = (time.perf_counter() - step_start) * 1000.0
            latencies.append(latency_ms)
            recent_outputs = [*recent_outputs[-29:], time.perf_counter()]
            if fused:
                fused_delays.append(d_o)
            elif d_o is not None:
                stale_delays.append(d_o)
            mode = "fused" if fused else ("stale" if received is not None else "local_only")
            record = {
                "frame": index,
                "capture_time_ns": capture_ns,
                "latency_ms": round(latency_ms, 3),
                "mode": mode,
                "fused": fused,
                "source_frame": None if received is None else received.source_sequence,
                "context_frames": None if received is None else list(received.context_sequences),
                "d_o": d_o,
                "d_o_ms": None if d_o is None else round(d_o * frame_ms, 1),
                "d_i": None if received is None else received.conditioned_delay_ticks,
                "requested_d_i": requested,
                "rtt_ms": None if received is None else round(received.round_trip_ms, 2),
                "connected": bool(connection and connection.stats.connected),
            }
            if log is not None:
                log.write(record)
            if options.on_output is not None:
                options.on_output(record, class_ids)
            if options.video_path is not None:
                if video is None:
                    video = OverlayVideoWriter(options.video_path, source.fps, *_video_size(rgb))
                video.write(
                    rgb, class_ids, _banner(options.banner, recent_outputs, mode, d_o, received)
                )
            progress.update()
    finally:
        progress.close()
        if connection is not None:
            connection.stop()
        if log is not None:
            log.close()
        if video is not None:
            video.close()
    return _summarise(
        source,
        latencies,
        _Delays(fused_delays, stale_delays, options.max_staleness_frames, server_ms),
        skipped,
        frame_ms,
        start,
        connection,
    )


def _warm_up(runtime: LocalRuntime, feature_shape: tuple[int, int, int]) -> None:
    """First calls allocate and pick kernels; keep that out of frame latencies."""
    height, width = runtime.local_size
    blank = np.zeros((height, width, 3), dtype=np.uint8)
    for _ in range(2):
        runtime.segment(blank, None)
        runtime.segment(blank, torch.zeros(1, *feature_shape))


def _wait_connected(stats: LinkStats, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not stats.connected and time.monotonic() < deadline:
        time.sleep(0.02)


def _banner(
    prefix: str, outputs: list[float], mode: str, d_o: int | None, received: ReceivedFeatures | None
) -> str:
    fps = (len(outputs) - 1) / (outputs[-1] - outputs[0]) if len(outputs) > 1 else 0.0
    state = (
        f"FUSED D_o={d_o} D_i={received.conditioned_delay_ticks:g}"
        if mode == "fused" and received is not None
        else mode.upper().replace("_", "-")
    )
    return " | ".join(part for part in (prefix, f"{fps:4.1f} fps", state) if part)


@dataclass
class _Delays:
    """What the run saw of the features' age: D_o of fused and of too-stale frames."""

    fused: list[int]
    stale: list[int]
    max_staleness: int
    server_ms: list[float]


def _median(values: list[float] | list[int]) -> float | None:
    return float(np.median(values)) if values else None


def _summarise(
    source: FrameSource,
    latencies: list[float],
    delays: _Delays,
    skipped: int,
    frame_ms: float,
    start: float,
    connection: CloudConnection | None,
) -> EdgeSummary:
    frames = len(latencies)
    elapsed = time.perf_counter() - start
    stats = connection.stats if connection is not None else None
    mean_d_o = float(np.mean(delays.fused)) if delays.fused else None
    return EdgeSummary(
        source=source.name,
        frames=frames,
        skipped=skipped,
        fused=len(delays.fused),
        fused_fraction=len(delays.fused) / frames if frames else 0.0,
        mean_d_o_frames=mean_d_o,
        mean_d_o_ms=None if mean_d_o is None else mean_d_o * frame_ms,
        stale=len(delays.stale),
        stale_d_o_p50_frames=_median(delays.stale),
        max_staleness_frames=delays.max_staleness,
        server_time_p50_ms=_median(delays.server_ms),
        latency_p50_ms=float(np.percentile(latencies, 50)) if frames else 0.0,
        latency_p99_ms=float(np.percentile(latencies, 99)) if frames else 0.0,
        output_fps=frames / elapsed if elapsed > 0 else 0.0,
        duration_s=elapsed,
        uplink_kbps=_kbps(stats.uplink_bytes if stats else 0, elapsed),
        downlink_kbps=_kbps(stats.downlink_bytes if stats else 0, elapsed),
        link=asdict(stats) if stats is not None else {},
    )


def _kbps(num_bytes: int, seconds: float) -> float:
    return num_bytes * 8 / seconds / 1000.0 if seconds > 0 else 0.0
