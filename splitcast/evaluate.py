"""`splitcast evaluate`: mIoU versus delay for Dedelayed and every baseline, written as files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitcast.data.clips import open_clips
from splitcast.models.checkpoint import load_system_with_meta
from splitcast.models.evaluation import OfflineEvaluator
from splitcast.reports import plot_miou_vs_delay, plot_mismatch, write_csv, write_json


@dataclass
class EvaluationRequest:
    """What to score; defaults reproduce the README's results table."""

    checkpoint: str = "default"
    data: Path = Path("out/data/val")
    out: Path = Path("out/eval")
    delays: list[float] = field(default_factory=lambda: [float(d) for d in range(11)])
    every: int = 1
    mismatch: bool = False
    mismatch_every: int = 4
    strides: list[int] = field(default_factory=lambda: [1])
    local_heights: list[int] = field(default_factory=list)
    progress: bool = True


def evaluate_offline(request: EvaluationRequest) -> dict[str, Any]:
    """Score the split; write results.json, results.csv, miou_vs_delay.png (and mismatch.png)."""
    system, meta = load_system_with_meta(request.checkpoint)
    dataset = open_clips(request.data)
    fps = dataset.meta.fps
    evaluator = OfflineEvaluator(system, dataset)
    main = evaluator.run(request.delays, stride=1, every=request.every, progress=request.progress)
    delays = request.delays
    rtt_ms = [d * 1000.0 / fps for d in delays]
    config = system.config
    results: dict[str, Any] = {
        "fps": fps,
        "delays": delays,
        "rtt_ms": [round(ms, 1) for ms in rtt_ms],
        "targets": main["targets"],
        "miou": main["miou"],
        "per_class_iou": main["per_class_iou"],
        "checkpoint": {"name": request.checkpoint, "version": config.version, "meta": meta},
        "data": {
            "path": str(request.data),
            "meta": dataset.meta.to_json([c.name for c in dataset.clips]),
        },
        "config": config.to_dict(),
    }
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
            study = OfflineEvaluator(system, dataset, local_size=size).run(
                delays, every=request.every, progress=request.progress
            )
            results["by_local_height"][str(height)] = {
                "local_size": list(size),
                "miou": study["miou"],
            }
    _write(request.out, results)
    return results


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
    return "\n".join([header, rule, *rows])
