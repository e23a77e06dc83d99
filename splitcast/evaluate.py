"""`splitcast evaluate`: mIoU versus delay for Dedelayed and every baseline, written as files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from splitcast.data.clips import ClipDataset, open_clips
from splitcast.files import write_json
from splitcast.models.checkpoint import load_system_with_meta, system_state
from splitcast.models.codec import Codec, get_codec
from splitcast.models.devices import placement
from splitcast.models.evaluation import OfflineEvaluator
from splitcast.models.registry import SplitSystem
from splitcast.models.score_tables import gains_over_local_only
from splitcast.reports import (
    plot_miou_vs_delay,
    plot_mismatch,
    plot_rate_accuracy,
    write_csv,
)

RATE_DELAY_TICKS = 3.0


@dataclass
class EvaluationRequest:
    """What to score; defaults reproduce the README's results table."""

    checkpoint: str = "default"
    data: Path = Path("out/data/val")
    out: Path = Path("out/eval")
    delays: list[float] | None = None
    """Answer ages in ticks (None: every whole tick up to the checkpoint's horizon)."""
    every: int = 1
    mismatch: bool = False
    mismatch_every: int = 4
    strides: list[int] = field(default_factory=lambda: [1])
    local_heights: list[int] = field(default_factory=list)
    codec: str | None = None
    combiner: str | None = None
    """Score another combiner on the checkpoint's networks (with its policy from the
    checkpoint, if calibrated, and its default codec unless `codec` says otherwise)."""
    rate_sweep: list[str] = field(default_factory=list)
    progress: bool = True
    device: str = "auto"
    """Where the networks run, and in what precision (`splitcast.models.devices`)."""
    precision: str | None = None


def evaluator_for(
    system: SplitSystem, dataset: ClipDataset, request: EvaluationRequest, **options: Any
) -> OfflineEvaluator:
    """An evaluator on the request's device, in its precision."""
    device, precision = placement(request.device, request.precision)
    return OfflineEvaluator(system, dataset, device=device, precision=precision, **options)


def evaluate_offline(request: EvaluationRequest) -> dict[str, Any]:
    """Score the split; write results.json, results.csv, miou_vs_delay.png (and mismatch.png)."""
    system, meta = load_system_with_meta(request.checkpoint)
    if request.combiner is not None:
        system = system.with_combiner(request.combiner)
    dataset = open_clips(request.data)
    fps = dataset.meta.fps
    codec = request.codec or system.config.codec
    system.combiner(codec)  # refuses a codec that cannot carry this combiner's answers
    evaluator = evaluator_for(system, dataset, request, codec=get_codec(codec, system.bottleneck))
    variants = rate_variants(system, request) if request.rate_sweep else None
    delays = request.delays or [float(d) for d in range(system.config.horizon_ticks + 1)]
    main = evaluator.run(delays, stride=1, every=request.every, progress=request.progress)
    rtt_ms = [d * 1000.0 / fps for d in delays]
    config = system.config
    results: dict[str, Any] = {
        "fps": fps,
        "delays": delays,
        "rtt_ms": [round(ms, 1) for ms in rtt_ms],
        "targets": main["targets"],
        "miou": main["miou"],
        "gain_over_local_only": [
            gain.to_json()
            for gain in gains_over_local_only(list(evaluator.clip_matrices.values()), len(delays))
        ],
        "per_class_iou": main["per_class_iou"],
        "checkpoint": {"name": request.checkpoint, "version": config.version, "meta": meta},
        "data": {
            "path": str(request.data),
            "meta": dataset.meta.to_json([c.name for c in dataset.clips]),
        },
        "config": config.to_dict(),
        "codec": codec,
        **_byte_figures("downlink", evaluator.downlink_bytes, fps),
        **_byte_figures("uplink", evaluator.uplink_bytes, fps),
    }
    if evaluator.stopped_by is not None:  # what was scored is written; the further studies are not
        results["stopped_by"] = evaluator.stopped_by
        results["clips_scored"] = f"{len(evaluator.clip_matrices)} of {len(dataset.clips)}"
        _write(request.out, results)
        return results
    if request.mismatch:
        grid = evaluator.run(
            delays, every=request.mismatch_every, mismatch=delays, progress=request.progress
        )
        results["mismatch"] = {
            "rows": "true delay D_o",
            "columns": "assumed delay D_i",
            "delays": delays,
            "matrix": grid["mismatch"],
        }
    extra_strides = [s for s in request.strides if s != 1]
    if extra_strides:
        results["by_stride"] = {"1": main["miou"]}
        for stride in extra_strides:
            results["by_stride"][str(stride)] = evaluator.run(
                delays, stride=stride, every=request.every, progress=request.progress
            )["miou"]
    if request.local_heights:
        aspect = config.local_size[1] / config.local_size[0]
        results["by_local_height"] = {}
        for height in request.local_heights:
            size = (height, round(height * aspect / 8) * 8)
            study = evaluator_for(
                system, dataset, request, local_size=size, codec=evaluator.codec
            ).run(delays, every=request.every, progress=request.progress)
            results["by_local_height"][str(height)] = {
                "local_size": list(size),
                "miou": study["miou"],
            }
    if variants is not None:
        results["rate"] = rate_sweep(system, request, dataset, variants)
    _write(request.out, results)
    return results


def _byte_figures(direction: str, sizes: list[int], fps: float) -> dict[str, Any]:
    """Bytes per frame (mean, p95) and kbit/s at the data's frame rate of one direction."""
    mean = float(np.mean(sizes)) if sizes else 0.0
    return {
        f"{direction}_bytes_per_frame": {
            "mean": round(mean, 1),
            "p95": round(float(np.percentile(sizes, 95)), 1) if sizes else 0.0,
        },
        f"{direction}_kbps": round(mean * 8 * fps / 1000, 1),
    }


def _same_networks(system: SplitSystem, other: SplitSystem) -> bool:
    mine, theirs = system_state(system), system_state(other)
    return all(
        key in theirs and torch.equal(value, theirs[key])
        for key, value in mine.items()
        if key.startswith(("remote.", "local."))
    )


@dataclass
class RateVariants:
    """The codecs a rate sweep compares, and the training settings of the learned ones."""

    codecs: dict[str, Codec]
    settings: dict[str, dict[str, Any]]


def rate_variants(system: SplitSystem, request: EvaluationRequest) -> RateVariants:
    """raw-fp16 and int8-zstd (references) and the learned codec of each checkpoint of
    `request.rate_sweep`, which must share `system`'s networks (trained with `--train-only
    codec` from it, e.g. with different --rate-lambda, --codec-width or --codec-stride)."""
    if not system.combiner().fuses_features:
        raise ValueError(
            f"--rate-sweep compares feature codecs; this model's {system.config.combiner} "
            "answers are class log-probabilities"
        )
    variants: dict[str, Codec] = {name: get_codec(name) for name in ("raw-fp16", "int8-zstd")}
    settings = {}
    for checkpoint in request.rate_sweep:
        candidate, meta = load_system_with_meta(checkpoint)
        if not _same_networks(system, candidate):
            raise ValueError(
                f"--rate-sweep: {checkpoint} has other remote or local weights than "
                f"{request.checkpoint}; train it with `splitcast train --init "
                f"{request.checkpoint} --codec learned --train-only codec`"
            )
        variants[checkpoint] = get_codec("learned", candidate.bottleneck)
        settings[checkpoint] = {
            "rate_lambda": meta.get("training", {}).get("rate_lambda"),
            "width": candidate.bottleneck.width,
            "stride": candidate.bottleneck.stride,
        }
    return RateVariants(variants, settings)


def rate_sweep(
    system: SplitSystem, request: EvaluationRequest, dataset: ClipDataset, variants: RateVariants
) -> dict[str, Any]:
    """Rate against accuracy at d = 3, every variant scored in one pass on the same
    features."""
    settings = variants.settings
    evaluator = evaluator_for(system, dataset, request, codec=None)
    scored = evaluator.run(
        [RATE_DELAY_TICKS],
        every=request.every,
        progress=request.progress,
        variants=variants.codecs,
    )
    fps = dataset.meta.fps
    points = {
        name: {
            "codec": "learned" if name in settings else name,
            "dedelayed": scored["variants"][name][0],
            **_byte_figures("downlink", evaluator.variant_bytes[name], fps),
        }
        for name in variants.codecs
    }
    learned = sorted(
        ({"checkpoint": name, **settings[name], **points[name]} for name in settings),
        key=lambda point: point["downlink_kbps"],
    )
    shape = system.local.downlink_shape(system.config.local_size)
    return {
        "delay_ticks": RATE_DELAY_TICKS,
        "raw_fp32_bytes_per_frame": 4 * int(np.prod(shape)),
        "references": {name: points[name] for name in ("raw-fp16", "int8-zstd")},
        "local_only": scored["miou"]["local_only"][0],
        "learned": learned,
    }


def _write(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    write_csv(out / "results.csv", results["delays"], results["rtt_ms"], results["miou"])
    title = (
        f"{results['config']['name']} ({results['config']['version']}) on {results['data']['path']}"
    )
    plot_miou_vs_delay(
        out / "miou_vs_delay.png", results["rtt_ms"], results["delays"], results["miou"], title
    )
    if "mismatch" in results:
        plot_mismatch(out / "mismatch.png", results["delays"], results["mismatch"]["matrix"])
    if "rate" in results:
        plot_rate_accuracy(out / "rate_accuracy.png", results["rate"])


def format_table(results: dict[str, Any]) -> str:
    """The mIoU table as Markdown (methods as rows, delays as columns)."""
    header = (
        "| method | "
        + " | ".join(
            f"{d:g} / {ms:.0f}" for d, ms in zip(results["delays"], results["rtt_ms"], strict=True)
        )
        + " |"
    )
    rule = "|---" * (len(results["delays"]) + 1) + "|"
    rows = [
        f"| {method} | " + " | ".join(f"{v:.2f}" for v in values) + " |"
        for method, values in results["miou"].items()
    ]
    gains = results["gain_over_local_only"]
    rows.append(
        "| gain over local-only [95 % interval over clips] | "
        + " | ".join(f"{g['gain']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}]" for g in gains)
        + " |"
    )
    return "\n".join([header, rule, *rows])
