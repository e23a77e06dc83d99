"""Mean intersection-over-union from a confusion matrix accumulated over a whole split.

Scores are accumulated pixel counts, not averages of per-image scores: a class's IoU is
TP / (TP + FP + FN) summed over every pixel of the split, as in Cityscapes and the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from splitcast.data.classes import IGNORE_INDEX


class ConfusionMatrix:
    """Pixel counts `counts[target, prediction]` over everything passed to `update`."""

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names) if class_names is not None else None
        self.counts = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Add a prediction and its label (integer class ids, same shape, any batch layout).

        Pixels whose target is the ignore index are skipped. Ids outside 0..C-1 anywhere else
        raise ValueError: they mean a wrong model head or label space, not a bad pixel.
        """
        pred, target = _as_int_array(pred, "prediction"), _as_int_array(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]  # boolean indexing also flattens
        for name, ids in (("prediction", pred), ("target", target)):
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
                bad = np.unique(ids[(ids < 0) | (ids >= self.num_classes)])
                raise ValueError(
                    f"{name} has class ids {bad[:10].tolist()} outside 0..{self.num_classes - 1}"
                )
        flat = self.num_classes * target + pred
        self.counts += np.bincount(flat, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (e.g. from another worker or process) into this one."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) "
                f"into a {self.num_classes}-class one (ignore {self.ignore_index})"
            )
        self.counts += other.counts

    def iou(self) -> np.ndarray:
        """IoU per class in percent; NaN where the class is in neither labels nor predictions."""
        return iou_from_counts(self.counts)

    def miou(self) -> float:
        """Mean IoU in percent over the classes with a non-empty union (`miou_from_counts`)."""
        return float(miou_from_counts(self.counts))

    def per_class(self) -> dict[str, float]:
        """Class name (or its id as a string when no names were given) -> IoU in percent."""
        names = self.class_names or tuple(str(i) for i in range(self.num_classes))
        return dict(zip(names, self.iou().tolist(), strict=True))


def iou_from_counts(counts: np.ndarray) -> np.ndarray:
    """IoU per class in percent of confusion counts [..., C, C] (target, prediction); NaN
    where the class is in neither labels nor predictions."""
    true_positive = np.diagonal(counts, axis1=-2, axis2=-1).astype(np.float64)
    union = counts.sum(axis=-2) + counts.sum(axis=-1) - true_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, 100.0 * true_positive / union, np.nan)


def miou_from_counts(counts: np.ndarray) -> np.ndarray:
    """Mean IoU in percent of confusion counts [..., C, C], over the classes with a non-empty
    union: a class in neither labels nor predictions carries no evidence either way; one in
    the labels but never predicted (or predicted but absent) counts as 0. NaN if nothing was
    counted."""
    iou = iou_from_counts(counts)
    present = ~np.isnan(iou)
    total = np.where(present, iou, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(present.any(axis=-1), total / present.sum(axis=-1), np.nan)


@dataclass(frozen=True)
class Gain:
    """mIoU of one method minus another's over a split, with a bootstrap interval over clips."""

    gain: float
    low: float
    high: float
    above_zero: float
    """Fraction of the resampled splits in which the gain was positive."""

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4 if k == "above_zero" else 2) for k, v in asdict(self).items()}


def bootstrap_gain(
    method: np.ndarray,
    baseline: np.ndarray,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Gain:
    """mIoU(method) - mIoU(baseline) from per-clip confusion counts [clips, C, C] of each,
    and its percentile interval at `level` from resampling whole clips with replacement (the
    clips, not the pixels, are the independent units: frames of one clip are alike)."""
    if method.shape != baseline.shape or method.ndim != 3 or not len(method):
        raise ValueError(
            f"need per-clip counts [clips, C, C] of the same shape, got {method.shape} "
            f"and {baseline.shape}"
        )
    clips = len(method)
    draws = np.random.default_rng(seed).integers(0, clips, (resamples, clips))
    weights = np.stack([np.bincount(row, minlength=clips) for row in draws])
    flat = (weights @ method.reshape(clips, -1)).reshape(resamples, *method.shape[1:])
    base = (weights @ baseline.reshape(clips, -1)).reshape(resamples, *baseline.shape[1:])
    gains = miou_from_counts(flat) - miou_from_counts(base)
    tail = (1.0 - level) / 2 * 100
    low, high = np.nanpercentile(gains, [tail, 100 - tail])
    point = miou_from_counts(method.sum(0)) - miou_from_counts(baseline.sum(0))
    return Gain(float(point), float(low), float(high), float(np.mean(gains > 0)))


def _as_int_array(values: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Class ids as an int64 numpy array; floats are refused rather than silently truncated."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)
