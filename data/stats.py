"""`splitcast data stats`: evidence that a dataset is a real benchmark for delayed inference.

- class frequencies (fraction of labelled pixels);
- the "stale label" mIoU: label t-d*s scored as a prediction of label t. It is what a perfect
  but late model would get, so it measures how much the scene moves in d ticks at stride s.
  Every (d, s) is scored on the same target frames (those with a label d_max*s_max frames
  back), so the rows and columns are comparable;
- small classes: the median area of a class's instances as a fraction of the frame, with
  instances taken as connected components of the class in a label (touching instances merge,
  which only makes the figure larger; fragments under 16 pixels, such as slivers of a class
  seen through a fence, are not counted as instances).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from splitcast.data.clips import ClipDataset, DataError
from splitcast.data.metrics import ConfusionMatrix

SMALL_AREA = 0.005
MIN_INSTANCE_PIXELS = 16


def dataset_stats(
    dataset: ClipDataset,
    max_delay: int = 10,
    strides: tuple[int, ...] = (1, 2, 3),
    instance_every: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Compute the statistics described in the module docstring."""
    meta = dataset.meta
    names = meta.classes
    reach = max_delay * max(strides)
    pixels = np.zeros(meta.num_classes, dtype=np.int64)
    stale = {
        s: [ConfusionMatrix(meta.num_classes, meta.ignore_index) for _ in range(max_delay + 1)]
        for s in strides
    }
    areas: dict[int, list[float]] = defaultdict(list)
    targets = 0
    for clip in tqdm(dataset.clips, desc="stats", unit="clip", disable=not progress):
        labels = {t: clip.label(t) for t in clip.labelled}
        for position, t in enumerate(clip.labelled):
            current = labels[t]
            assert current is not None
            valid = current[current != meta.ignore_index]
            pixels += np.bincount(valid, minlength=meta.num_classes)[: meta.num_classes]
            if position % instance_every == 0:
                _instance_areas(current, meta.num_classes, areas)
            if t < reach:
                continue
            past = {s: [labels.get(t - d * s) for d in range(max_delay + 1)] for s in strides}
            if any(p is None for row in past.values() for p in row):
                continue
            targets += 1
            for s, row in past.items():
                for d, previous in enumerate(row):
                    stale[s][d].update(
                        _as_prediction(previous, meta.ignore_index),
                        _masked(current, previous, meta.ignore_index),
                    )
    if targets == 0:
        raise DataError(
            f"no labelled frame has labels {reach} frames back; clips are too short for "
            f"d={max_delay} at stride {max(strides)}"
        )
    total = pixels.sum()
    small = {names[c]: float(np.median(a)) for c, a in sorted(areas.items()) if a}
    return {
        "clips": len(dataset),
        "targets": targets,
        "class_frequency": {names[c]: float(pixels[c] / total) for c in range(meta.num_classes)},
        "stale_miou": {
            str(s): [round(m.miou(), 2) for m in matrices] for s, matrices in stale.items()
        },
        "small_classes": small,
        "classes_below_0.5_percent": sorted(n for n, a in small.items() if a < SMALL_AREA),
    }


def _as_prediction(label: np.ndarray, ignore_index: int) -> np.ndarray:
    """Ignored pixels of the past label cannot be predictions; `_masked` drops them."""
    return np.where(label == ignore_index, 0, label)


def _masked(target: np.ndarray, previous: np.ndarray, ignore_index: int) -> np.ndarray:
    return np.where(previous == ignore_index, ignore_index, target)


def _instance_areas(label: np.ndarray, num_classes: int, areas: dict[int, list[float]]) -> None:
    frame = float(label.size)
    for class_id in np.unique(label):
        if class_id >= num_classes:
            continue
        count, _, stats, _ = cv2.connectedComponentsWithStats(
            (label == class_id).astype(np.uint8), connectivity=8
        )
        sizes = stats[1:count, cv2.CC_STAT_AREA]
        areas[int(class_id)].extend((sizes[sizes >= MIN_INSTANCE_PIXELS] / frame).tolist())


def format_stats(stats: dict[str, Any]) -> str:
    """Human-readable tables."""
    lines = [
        f"{stats['clips']} clips, {stats['targets']} target frames",
        "",
        "class frequency (% of pixels):",
    ]
    for name, share in sorted(stats["class_frequency"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:14s} {100 * share:6.2f}")
    delays = len(next(iter(stats["stale_miou"].values())))
    lines += ["", "stale-label mIoU (%), label t-d*s scored against label t:"]
    lines.append("  stride " + "".join(f"{f'd={d}':>7s}" for d in range(delays)))
    for stride, row in stats["stale_miou"].items():
        lines.append(f"  {stride:>6s} " + "".join(f"{v:7.1f}" for v in row))
    lines += ["", "median instance area (% of frame):"]
    for name, area in sorted(stats["small_classes"].items(), key=lambda kv: kv[1]):
        marker = "  <0.5%" if area < SMALL_AREA else ""
        lines.append(f"  {name:14s} {100 * area:7.3f}{marker}")
    return "\n".join(lines)
