"""`splitcast bench`: where every millisecond of a frame goes, measured on this machine.

Two parts, in one run. First the edge step alone, on the same frames and one real answer, for
each way of running it (PyTorch; ONNX Runtime for the local model with the combiner in
PyTorch; the export folder, all in ONNX Runtime): local-only and with the answer, each frame
timed both ways in turn so the two share the machine's state. Then the live system on
loopback: a real `splitcast serve` process and the edge in this process (from the export
folder, as deployed), once straight to the server and once through a `splitcast link` relay
adding the round trip asked for. Every answer the edge used carries its trip's times from both
ends (`splitcast.edge.slots.AnswerTrip`; one clock on one machine), so each stage is a
difference of two clocks readings, never an estimate. A run that used no answer (a server too
slow or a link too long for the edge's staleness limit) measures no stage: it says why instead,
from what its edge recorded, and the figures that need it are None.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from splitcast.cloud.runtime import RemoteRuntime
from splitcast.edge.client import ANSWER_TOO_OLD, EdgeClient
from splitcast.edge.connection import CONNECTING
from splitcast.edge.exported import MANIFEST, ExportedEdge
from splitcast.edge.loop import on_time
from splitcast.edge.model import EdgeModel
from splitcast.edge.runtime import LocalRuntime
from splitcast.edge.sinks import OverlayVideoWriter
from splitcast.edge.slots import AnswerTrip
from splitcast.edge.sources import MovingSceneSource
from splitcast.export import export_checkpoint_graphs
from splitcast.launch import start_link, start_server
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import get_codec

STAGES: tuple[tuple[str, str], ...] = (
    ("capture", "edge"),
    ("uplink wait", "edge"),
    ("uplink encode", "edge"),
    ("uplink transfer", "network"),
    ("server queue", "server"),
    ("server decode", "server"),
    ("model", "server"),
    ("answer encode", "server"),
    ("downlink transfer", "network"),
    ("edge decode", "edge"),
    ("wait for next frame", "edge"),
    ("edge step", "edge"),
    ("output", "edge"),
)
"""One frame's trip in order, and where each stage runs. Transfers are serialisation, gRPC,
the link (if any) and deserialisation; the server queue is the latest-wins mailbox plus the
wait for the model thread; the answer then waits in the edge's slot for the next frame."""

ANSWER_AGE_TICKS = 3.0
"""The age of the answer the edge step is timed with (100 ms at 30 fps)."""

CONNECT_WAIT_S = 60.0
"""The longest a live run waits for the edge's first try to reach the server to end."""

OVERHEAD = (
    "grpc_and_serialisation_ms",
    "answer_codec_ms",
    "uplink_image_codec_ms",
    "grpc_serialisation_and_answer_codec_ms",
)
"""The loopback run's per-frame overheads `summarise` reports (None when it traced nothing)."""


@dataclass(frozen=True)
class BenchOptions:
    """What `splitcast bench` runs; defaults work offline on this machine."""

    checkpoint: str = "default"
    export: Path | None = None
    """An export folder of the checkpoint (default: exported into `out` first)."""
    frames: int = 150
    fps: float = 30.0
    rtt_ms: float = 100.0
    steps: int = 40
    """Frames the edge step alone is timed on, per runtime and mode."""
    out: Path = Path("out/bench")
    progress: bool = True


def _ms(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


def trip_stages(trip: AnswerTrip, capture_ms: float, step_start_ns: int) -> dict[str, float]:
    """The network-side stages of one answer's trip in ms (`STAGES` up to the wait for the
    frame that used it; `capture_ms`: reading its frame from the source)."""
    return {
        "capture": capture_ms,
        "uplink wait": _ms(trip.capture, trip.encode_start),
        "uplink encode": _ms(trip.encode_start, trip.encode_end),
        "uplink transfer": _ms(trip.encode_end, trip.server_receive),
        "server queue": _ms(trip.server_receive, trip.server_taken)
        + _ms(trip.server_decoded, trip.model_start),
        "server decode": _ms(trip.server_taken, trip.server_decoded),
        "model": _ms(trip.model_start, trip.model_end),
        "answer encode": _ms(trip.model_end, trip.answer_encoded),
        "downlink transfer": _ms(trip.answer_encoded, trip.arrival),
        "edge decode": _ms(trip.arrival, trip.decoded),
        "wait for next frame": _ms(trip.decoded, step_start_ns),
    }


@dataclass
class _LiveRecord:
    """Per used answer: its stages; per frame: step latency, mode and why no answer was used
    (with the age of answers too old to use); per answer received: the server's time."""

    trips: list[dict[str, float]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    causes: Counter[str] = field(default_factory=Counter)
    stale_ages: list[int] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    skipped: int = 0


def _median(values: list[float] | list[int]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _why_untraced(record: _LiveRecord, max_staleness: int, link_error: str) -> str | None:
    """Why a run traced no answer, in the edge's words: its frames by cause (with how old the
    answers too old to use were) and the server's time per answer, so that a slow server can
    be told from a long link; None when it traced some."""
    if record.trips:
        return None
    used = record.modes.count("combined")
    parts = [f"{used} frames used an answer but none was traced" if used else "no answer was used"]
    for cause, frames in record.causes.items():
        part = f"{cause} on {frames} frames"
        if cause == ANSWER_TOO_OLD:
            age = _median(record.stale_ages)
            part += f" (D_o p50 {age:g} frames, staleness limit {max_staleness})"
        parts.append(part)
    server = _median(record.server_ms)
    parts.append(
        "no answer reached the edge"
        if server is None
        else f"the server took {server:g} ms per answer (p50)"
    )
    if link_error:
        parts.append(f"the link's last error: {link_error}")
    return "; ".join(parts)


def _wait_first_try(client: EdgeClient) -> None:
    """Until the edge's first try to reach the server has ended, up or failed (at most
    `CONNECT_WAIT_S`), so a run starts streaming; a link whose round trip outlasts the edge's
    connect timeout fails every try, and the run goes on: its frames say why."""
    deadline = time.monotonic() + CONNECT_WAIT_S
    while client.stats is not None and client.stats.state == CONNECTING:
        if time.monotonic() >= deadline:
            return
        time.sleep(0.02)


def live_run(
    model: EdgeModel, server: str, options: BenchOptions, name: str, out: Path
) -> dict[str, Any]:
    """The edge on `frames` frames of the moving scene paced at `fps` against `server`, its
    output written to `out/NAME.mp4`; every stage's median over the answers it used (None when
    it traced none, and `why_untraced` says why), and the run's counts."""
    video = out / f"{name}.mp4"
    record = _LiveRecord()
    captures: dict[int, float] = {}
    source = MovingSceneSource(num_frames=options.frames, fps=options.fps)
    frames = source.frames()
    last_source = last_answer = None
    writer: OverlayVideoWriter | None = None
    bar = tqdm(total=options.frames, desc=name, unit="frame", disable=not options.progress)
    with EdgeClient(model, server=server, fps=options.fps) as client:
        _wait_first_try(client)
        start = time.perf_counter()
        for index in range(options.frames):
            before = time.time_ns()
            rgb = next(frames)
            captured = time.time_ns()
            captures[index] = _ms(before, captured)
            bar.update()
            if not on_time(start, index, options.fps):
                record.skipped += 1
                continue
            step_start = time.time_ns()
            result = client.step(rgb, capture_time_ns=captured, sequence=index)
            written = time.perf_counter()
            if writer is None:
                writer = OverlayVideoWriter(video, options.fps, rgb.shape[1], rgb.shape[0])
            writer.write(rgb, result.class_ids, f"{name} | {result.mode}")
            output_ms = (time.perf_counter() - written) * 1000.0
            record.latencies.append(result.latency_ms)
            record.modes.append(result.mode)
            if result.cause is not None:
                record.causes[result.cause] += 1
            if result.cause == ANSWER_TOO_OLD:
                record.stale_ages.append(result.d_o)
            if result.source_frame is not None and result.source_frame != last_answer:
                record.server_ms.append(result.server_ms)
                last_answer = result.source_frame
            received = client.connection.answers.latest() if client.connection else None
            new = result.mode == "combined" and result.source_frame != last_source
            if new and received is not None and received.trip is not None:
                if received.source_sequence == result.source_frame:
                    stages = trip_stages(received.trip, captures[result.source_frame], step_start)
                    stages |= {"edge step": result.latency_ms, "output": output_ms}
                    record.trips.append(stages)
                last_source = result.source_frame
        link_error = client.stats.last_error if client.stats else ""
    bar.close()
    if writer is not None:
        writer.close()
    stages = {
        stage: round(statistics.median(t[stage] for t in record.trips), 3) if record.trips else None
        for stage, _ in STAGES
    }
    return {
        "frames": options.frames,
        "stepped": len(record.modes),
        "skipped": record.skipped,
        "combined_fraction": round(record.modes.count("combined") / max(len(record.modes), 1), 3),
        "answers_traced": len(record.trips),
        "why_untraced": _why_untraced(record, client.max_staleness_frames, link_error),
        "causes": dict(record.causes),
        "stale_d_o_p50_frames": _median(record.stale_ages),
        "max_staleness_frames": client.max_staleness_frames,
        "server_time_p50_ms": _median(record.server_ms),
        "stage_ms_p50": stages,
        "trip_ms_p50": round(sum(stages.values()), 2) if record.trips else None,
        "step_ms_p50": _median(record.latencies),
        "video": str(video),
    }


def edge_step_runs(
    runners: dict[str, EdgeModel],
    answer: dict[str, np.ndarray],
    steps: int,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Each runner's edge step, local-only and with `answer` (`ANSWER_AGE_TICKS` old, motion
    measured from its frame), interleaved frame by frame, each first on every other frame;
    medians in ms, their ratio, and the share of pixels whose class equals the first
    runner's."""
    frames = list(MovingSceneSource(num_frames=steps + 4).frames())
    age = int(ANSWER_AGE_TICKS)
    times: dict[str, dict[str, list[float]]] = {
        name: {"local_only": [], "with_answer": []} for name in runners
    }
    agreement: dict[str, list[float]] = {name: [] for name in runners}
    for index in tqdm(range(len(frames)), desc="edge step", disable=not progress):
        reference = None
        for name, runner in runners.items():
            use = runner.use_at(ANSWER_AGE_TICKS)
            source = max(index - age, 0)
            steps_of = {
                "local_only": partial(runner.segment, frames[index], None, sequence=index),
                "with_answer": partial(
                    runner.segment, frames[index], answer, None, use, index, source
                ),
            }
            # the second call finds ONNX Runtime's and PyTorch's threads awake: take turns
            ids_of = {}
            for kind in sorted(steps_of, reverse=index % 2 == 1):
                start = time.perf_counter()
                ids_of[kind] = steps_of[kind]()
                if index >= age:  # the answer's frame must be in the history; warm-up frames
                    times[name][kind].append((time.perf_counter() - start) * 1000.0)
            if index < age:
                continue
            ids = ids_of["with_answer"]
            reference = ids if reference is None else reference
            agreement[name].append(float(np.mean(ids == reference)))
    results = {}
    for name, runner in runners.items():
        local = statistics.median(times[name]["local_only"])
        combined = statistics.median(times[name]["with_answer"])
        results[name] = {
            "runtime": runner.describe(),
            "local_only_ms_p50": round(local, 2),
            "with_answer_ms_p50": round(combined, 2),
            "with_answer_over_local_only": round(combined / local, 3),
            "ids_equal_to_first": round(statistics.mean(agreement[name]), 6),
        }
    return results


def real_answer(checkpoint: str) -> dict[str, np.ndarray]:
    """What a server of `checkpoint` sends after K frames of the moving scene, told the answer
    will be `ANSWER_AGE_TICKS` late, decoded as the edge decodes it."""
    system = load_system(checkpoint)
    runtime = RemoteRuntime(system)
    codec = get_codec(system.config.codec, system.bottleneck)
    stream = runtime.new_stream()
    scene = MovingSceneSource(num_frames=system.config.context_frames).frames()
    for sequence, rgb in enumerate(scene):
        encoded, _ = runtime.step(stream, sequence, rgb, ANSWER_AGE_TICKS)
    return {name: codec.decode(tensor)[np.newaxis] for name, tensor in encoded.items()}


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """The whole benchmark (see the module)."""
    export = options.export or options.out / "export"
    if not (export / MANIFEST).is_file():
        export_checkpoint_graphs(options.checkpoint, export)
    runners: dict[str, EdgeModel] = {
        "pytorch": LocalRuntime(load_system(options.checkpoint), runtime="torch"),
        "onnxruntime + pytorch combine": LocalRuntime(load_system(options.checkpoint)),
        "export folder (onnxruntime)": ExportedEdge(export),
    }
    answer = real_answer(options.checkpoint)
    steps = edge_step_runs(runners, answer, options.steps, options.progress)
    deployed = runners["export folder (onnxruntime)"]
    with start_server(options.checkpoint) as server:
        loopback = live_run(deployed, server.address, options, "loopback", options.out)
        with start_link(server.address, options.rtt_ms / 2) as link:
            linked = live_run(deployed, link.address, options, "link", options.out)
    return summarise(options, steps, loopback, linked)


def summarise(
    options: BenchOptions,
    steps: dict[str, dict[str, Any]],
    loopback: dict[str, Any],
    linked: dict[str, Any],
) -> dict[str, Any]:
    """The figures the issue asks for, side by side: the edge step ratios, gRPC and codec
    overhead per frame on loopback, and the link's setting against what was measured. A figure
    whose run traced no answer is None, and `not_measured` says which run it lacked."""
    bare, slow = loopback["stage_ms_p50"], linked["stage_ms_p50"]
    overhead: dict[str, float | None] = dict.fromkeys(OVERHEAD)
    if loopback["answers_traced"]:
        transfers = round(bare["uplink transfer"] + bare["downlink transfer"], 3)
        answer_codec = round(bare["answer encode"] + bare["edge decode"], 3)
        overhead = {
            "grpc_and_serialisation_ms": transfers,
            "answer_codec_ms": answer_codec,
            "uplink_image_codec_ms": round(bare["uplink encode"] + bare["server decode"], 3),
            "grpc_serialisation_and_answer_codec_ms": round(transfers + answer_codec, 3),
        }
    network: dict[str, float | None] = {
        "link_setting_one_way_ms": options.rtt_ms / 2,
        "uplink_measured_ms": None,
        "downlink_measured_ms": None,
    }
    if loopback["answers_traced"] and linked["answers_traced"]:
        network["uplink_measured_ms"] = round(slow["uplink transfer"] - bare["uplink transfer"], 2)
        network["downlink_measured_ms"] = round(
            slow["downlink transfer"] - bare["downlink transfer"], 2
        )
    untraced = [
        name
        for name, run in (("loopback", loopback), ("link", linked))
        if not run["answers_traced"]
    ]
    not_measured: dict[str, str] = {}
    if "loopback" in untraced:
        not_measured["overhead_per_frame_on_loopback"] = "no answer traced (loopback)"
    if untraced:
        not_measured["network"] = f"no answer traced ({', '.join(untraced)})"
    ratios = {name: run["with_answer_over_local_only"] for name, run in steps.items()}
    return {
        "checkpoint": options.checkpoint,
        "fps": options.fps,
        "rtt_ms": options.rtt_ms,
        "edge_step": steps,
        "overhead_per_frame_on_loopback": overhead,
        "network": network,
        "not_measured": not_measured,
        "loopback": loopback,
        "link": linked,
        "goals": {
            "edge_step_with_answer_over_local_only": {
                "goal": 1.05,
                "reached": ratios,
            },
            "grpc_serialisation_and_codec_ms": {
                "goal": 1.0,
                "reached": overhead["grpc_serialisation_and_answer_codec_ms"],
            },
        },
    }
