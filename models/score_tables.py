"""The confusion matrices one offline evaluation fills, and the figures they give."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitcast.data.metrics import ConfusionMatrix, Gain, bootstrap_gain

METHODS = (
    "local_only",
    "remote_stale_image",
    "remote_stale_video",
    "remote_predictive",
    "dedelayed",
    "oracle",
)


@dataclass
class Matrices:
    """The confusion matrices one `run` fills: per method and delay column, the candidate
    grid (delay x candidate), the codec variants and the D_o x D_i mismatch grid."""

    per_delay: dict[str, list[ConfusionMatrix]]
    fixed: dict[str, ConfusionMatrix]
    gain_grid: list[list[ConfusionMatrix]]
    variants: dict[str, list[ConfusionMatrix]]
    mismatch: list[list[ConfusionMatrix]] | None

    @classmethod
    def empty(
        cls,
        make: Callable[[], ConfusionMatrix],
        columns: int,
        candidates: int,
        variants: Iterable[str],
        side: int,
    ) -> Matrices:
        """Zero matrices from `make` for `columns` delays, a grid of `candidates` per delay,
        codec `variants` and a `side` x `side` mismatch grid (none if 0)."""
        fixed = ("local_only", "oracle")
        return cls(
            per_delay={m: [make() for _ in range(columns)] for m in METHODS if m not in fixed},
            fixed={m: make() for m in fixed},
            gain_grid=[[make() for _ in range(candidates)] for _ in range(columns)],
            variants={name: [make() for _ in range(columns)] for name in variants},
            mismatch=[[make() for _ in range(side)] for _ in range(side)] if side else None,
        )

    def cells(self) -> list[ConfusionMatrix]:
        """Every matrix, in an order that is the same for any two `Matrices` of one `run`."""
        found = [m for cells in self.per_delay.values() for m in cells]
        found += list(self.fixed.values())
        found += [m for row in self.gain_grid for m in row]
        found += [m for cells in self.variants.values() for m in cells]
        found += [m for row in self.mismatch or () for m in row]
        return found

    def add(self, other: Matrices) -> None:
        """Add the counts of `other` (e.g. one clip's) into these."""
        for mine, theirs in zip(self.cells(), other.cells(), strict=True):
            mine.merge(theirs)


def gains_over_local_only(per_clip: Sequence[Matrices], columns: int) -> list[Gain]:
    """Per delay column, Dedelayed's mIoU minus local-only's with its interval over clips
    (`per_clip`: one run's matrices of each clip)."""
    local = np.stack([clip.fixed["local_only"].counts for clip in per_clip])
    return [
        bootstrap_gain(
            np.stack([clip.per_delay["dedelayed"][column].counts for clip in per_clip]), local
        )
        for column in range(columns)
    ]


def miou_results(
    count: int, columns: int, matrices: Matrices, mismatch: Sequence[float] | None
) -> dict[str, Any]:
    """The JSON-ready figures of one `run`."""
    by_method = {m: [matrices.fixed[m]] * columns for m in matrices.fixed} | matrices.per_delay
    result: dict[str, Any] = {
        "targets": count,
        "miou": {m: [round(x.miou(), 2) for x in by_method[m]] for m in METHODS},
        "per_class_iou": {
            m: [{k: round(v, 2) for k, v in x.per_class().items()} for x in by_method[m]]
            for m in METHODS
        },
    }
    if matrices.variants:
        result["variants"] = {
            name: [round(x.miou(), 2) for x in cells] for name, cells in matrices.variants.items()
        }
    if matrices.gain_grid and matrices.gain_grid[0]:
        result["gain_grid"] = [
            [round(cell.miou(), 2) for cell in row] for row in matrices.gain_grid
        ]
    if mismatch and matrices.mismatch is not None:
        result["mismatch"] = [[round(cell.miou(), 2) for cell in row] for row in matrices.mismatch]
    return result
