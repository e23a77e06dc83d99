"""`splitcast evaluate --live`: play a split through the real edge -> link -> server path in
real time and score what the edge actually output.

Each clip is one edge session (a fresh stream, so the server's FIFO never mixes clips). The
edge logs, for every frame, whether it used an answer, the true delay D_o, the D_i the answer was
conditioned on and the frames the server used; scoring uses the same target frames as the
offline evaluation. The same decisions are then replayed offline (same context frames, same
D_i, same frame t, local-only where the edge was local-only), so the difference between the
two figures is what the transport itself costs (the downlink codec, timing), not the
scheduling.

The gain over local-only is reported twice: measured live (with a bootstrap interval over
clips), and offline at the median age of the answers the edge used, on the same target frames,
so that the live gain can be set against what the offline table promises at that age.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from splitcast.data.clips import Clip, DataError, DatasetMeta, open_clips
from splitcast.data.metrics import ConfusionMatrix, Gain, bootstrap_gain, miou_from_counts
from splitcast.edge.loop import EdgeOptions, run_edge
from splitcast.edge.sources import ClipSource
from splitcast.files import write_json
from splitcast.launch import SHARED_MACHINE_SERVER_THREADS, start_link, start_server
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import get_codec
from splitcast.models.devices import placement
from splitcast.models.evaluation import OfflineEvaluator, ScheduledFrame
from splitcast.models.score_tables import gains_over_local_only


@dataclass
class LiveRequest:
    checkpoint: str = "default"
    data: Path = Path("out/data/val")
    out: Path = Path("out/eval-live")
    rtt_ms: float = 100.0
    max_delay: float = 10.0
    clips: int | None = None
    link_args: list[str] = field(default_factory=list)
    server_threads: int = SHARED_MACHINE_SERVER_THREADS
    edge_threads: int = 1
    progress: bool = True
    device: str = "auto"
    """Where the server, the edge's PyTorch runtime and the replay run their networks, and in
    what precision (`splitcast.models.devices`)."""
    precision: str | None = None


class _OnLiveFrames(OfflineEvaluator):
    """An offline evaluator that scores only frames the live edge output (`frames`, per clip
    name), those whose remote context at the delays `run` scores lies inside the clip: at an
    age within the live run's largest delay, exactly the live run's frames (a busy edge skips
    some, so the targets alone would not be)."""

    def __init__(self, *args: Any, frames: dict[str, set[int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames = frames

    def targets(self, clip: Clip, max_delay: float, stride: int, every: int) -> list[int]:
        valid = super().targets(clip, max_delay, stride, every)
        return [t for t in valid if t in self.frames[clip.name]]


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _targets(offline: OfflineEvaluator, clips: list[Clip], max_delay: float) -> dict[str, set[int]]:
    """Per clip, the frames scored: the offline evaluation's targets at `max_delay`; at least
    one in all (a gain over no frame is not a number)."""
    targets = {clip.name: set(offline.targets(clip, max_delay, 1, 1)) for clip in clips}
    if not any(targets.values()):
        raise DataError(f"no clip has a labelled frame far enough in for delay {max_delay:g}")
    return targets


def _new_matrix(meta: DatasetMeta) -> ConfusionMatrix:
    return ConfusionMatrix(meta.num_classes, meta.ignore_index, meta.classes)


def _live_gain(
    offline: OfflineEvaluator,
    schedule: dict[str, dict[int, ScheduledFrame]],
    live: dict[str, ConfusionMatrix],
) -> Gain:
    """The live output's mIoU minus local-only's on the same frames (the replay's, after
    `run_schedule`), with its interval over the clips that have scored frames."""
    played = [clip.name for clip in offline.dataset.clips if schedule[clip.name]]
    return bootstrap_gain(
        np.stack([live[name].counts for name in played]),
        np.stack([offline.replay_local_only[name].counts for name in played]),
    )


def _offline_gain(
    replay: OfflineEvaluator,
    schedule: dict[str, dict[int, ScheduledFrame]],
    d_o_median: float | None,
    progress: bool,
) -> dict[str, Any] | None:
    """Dedelayed's offline gain over local-only at the median age of the answers the live edge
    used, in whole ticks of the model's frame rate, on the frames the live run scored: what
    the offline table promises at the age the transport actually gave. None when no answer
    was used or no scored frame lies far enough into its clip for that age."""
    if d_o_median is None:
        return None
    age = round(d_o_median * replay.config.fps / replay.dataset.meta.fps)
    offline = _OnLiveFrames(
        replay.system,
        replay.dataset,
        codec=replay.codec,
        device=replay.device,
        precision=replay.precision,
        frames={name: set(plan) for name, plan in schedule.items()},
    )
    if not any(offline.targets(clip, age, 1, 1) for clip in offline.dataset.clips):
        return None
    scored = offline.run([age], progress=progress)["targets"]
    gain = gains_over_local_only(list(offline.clip_matrices.values()), 1)[0]
    return {"age_ticks": age, **gain.to_json(), "frames_scored": scored}


def _signed(gain: dict[str, float]) -> str:
    return f"{gain['gain']:+.2f} [95 % {gain['low']:+.2f}, {gain['high']:+.2f}]"


def gain_line(result: dict[str, Any]) -> str:
    """The live gain over local-only next to the offline one at the measured age, in words."""
    offline = result["offline_gain_at_measured_age"]
    if result["d_o_median"] is None:
        at_age = "none (no answer was used, so no answer age was measured)"
    elif offline is None:
        at_age = "none (no scored frame lies far enough into its clip for the measured age)"
    else:
        at_age = f"{_signed(offline)} at the measured age {offline['age_ticks']} ticks"
    return (
        f"gain over local-only: live {_signed(result['live_gain_over_local_only'])} "
        f"vs offline {at_age}"
    )


def evaluate_live(request: LiveRequest) -> dict[str, Any]:
    """Run the split through server, link and edge; write live.json; return the figures."""
    device, precision = placement(request.device, request.precision)
    dataset = open_clips(request.data)
    clips = dataset.clips[: request.clips] if request.clips else dataset.clips
    meta = dataset.meta
    system = load_system(request.checkpoint)
    # The replay sends its answers through the server's downlink codec, as live.
    codec = get_codec(system.config.codec, system.bottleneck)
    offline = OfflineEvaluator(
        system, replace(dataset, clips=clips), codec=codec, device=device, precision=precision
    )
    targets = _targets(offline, clips, request.max_delay)
    live = {clip.name: _new_matrix(meta) for clip in clips}
    schedule: dict[str, dict[int, ScheduledFrame]] = {}
    records: list[dict[str, Any]] = []
    uplink_bytes = downlink_bytes = sent = received = 0
    seconds = 0.0
    torch.set_num_threads(request.edge_threads)
    request.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        server = stack.enter_context(
            start_server(
                request.checkpoint,
                threads=request.server_threads,
                log_path=request.out / "server.log",
                device=request.device,
                precision=request.precision,
            )
        )
        target = server.address
        if request.rtt_ms > 0:
            target = stack.enter_context(
                start_link(
                    server.address,
                    request.rtt_ms / 2,
                    log_path=request.out / "link.log",
                    extra=request.link_args,
                )
            ).address
        for clip in tqdm(
            clips, desc=f"live {request.rtt_ms:g} ms", unit="clip", disable=not request.progress
        ):
            label_size = clip.label(clip.labelled[0]).shape if clip.labelled else None
            wanted = targets[clip.name]
            plan: dict[int, ScheduledFrame] = {}

            def collect(
                record: dict[str, Any],
                class_ids: np.ndarray,
                clip=clip,
                wanted=wanted,
                plan=plan,
                matrix=live[clip.name],
            ) -> None:
                records.append({"clip": clip.name, **record})
                frame = record["frame"]
                if frame not in wanted:
                    return
                matrix.update(class_ids, clip.label(frame))
                combined = record["mode"] == "combined"
                plan[frame] = ScheduledFrame(
                    record["context_frames"] if combined else None,
                    record["d_i"] if combined else None,
                    record["source_frame"],
                    class_ids.copy(),
                )

            summary = run_edge(
                ClipSource(clip, meta.fps),
                EdgeOptions(
                    model=request.checkpoint,
                    server=target,
                    realtime=True,
                    wait_for_server_s=30.0,
                    output_size=label_size,
                    on_output=collect,
                    progress=False,
                    device=request.device,
                    precision=request.precision,
                ),
            )
            schedule[clip.name] = plan
            link = summary.link
            seconds += summary.duration_s
            uplink_bytes += link["uplink_bytes"]
            downlink_bytes += link["downlink_bytes"]
            sent += link["frames_sent"]
            received += link["answers_received"]
            time.sleep(0.05)
    replay = offline.run_schedule(schedule, progress=request.progress)
    scored = [r for r in records if r["frame"] in targets[r["clip"]]]
    d_o = [r["d_o"] for r in scored if r["mode"] == "combined"]
    d_o_median = _percentile(d_o, 50)
    combined_latency = [r["latency_ms"] for r in records if r["mode"] == "combined"]
    local_latency = [r["latency_ms"] for r in records if r["mode"] != "combined"]
    result = {
        "rtt_ms": request.rtt_ms,
        "fps": meta.fps,
        "clips": len(clips),
        "frames_scored": len(scored),
        "live_miou": round(float(miou_from_counts(sum(m.counts for m in live.values()))), 2),
        "offline_replay_miou": replay["dedelayed"],
        "offline_local_only_miou": replay["local_only"],
        "live_gain_over_local_only": _live_gain(offline, schedule, live).to_json(),
        "offline_gain_at_measured_age": _offline_gain(
            offline, schedule, d_o_median, request.progress
        ),
        "offline_remote_stale_miou": replay["remote_stale"],
        "replay_pixel_agreement": replay["replay_agreement"],
        "answer_age_ms_p50": _percentile(
            [r["rtt_ms"] for r in scored if r["rtt_ms"] is not None], 50
        ),
        "combined_fraction": round(
            sum(r["mode"] == "combined" for r in scored) / max(1, len(scored)), 4
        ),
        "d_o_distribution": {str(k): v for k, v in sorted(Counter(d_o).items())},
        "d_o_median": d_o_median,
        "d_i_distribution": {
            str(k): v
            for k, v in sorted(Counter(r["d_i"] for r in scored if r["mode"] == "combined").items())
        },
        "latency_ms": {
            "combined_p50": _percentile(combined_latency, 50),
            "combined_p99": _percentile(combined_latency, 99),
            "local_only_p50": _percentile(local_latency, 50),
            "local_only_p99": _percentile(local_latency, 99),
            "all_p50": _percentile([r["latency_ms"] for r in records], 50),
            "all_p99": _percentile([r["latency_ms"] for r in records], 99),
        },
        "uplink_bytes_per_frame": uplink_bytes / max(1, sent),
        "downlink_bytes_per_frame": downlink_bytes / max(1, received),
        "uplink_kbps": round(uplink_bytes * 8 / seconds / 1000, 1) if seconds else 0.0,
        "downlink_kbps": round(downlink_bytes * 8 / seconds / 1000, 1) if seconds else 0.0,
        "frames_sent": sent,
        "answers_received": received,
    }
    write_json(request.out / "live.json", result)
    with (request.out / "frames.jsonl").open("w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return result
