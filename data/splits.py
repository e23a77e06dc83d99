"""Default sizes and seeds of the synthetic benchmark's splits (disjoint seeds per split).

`calib` is held out from training and from the reported splits: it is where a trained model's
edge-side settings (the downlink gain by age, `splitcast calibrate`) are chosen.

A user's own clips come as one folder; `split_by_clip` cuts it into the same three roles for
`splitcast fit`, and `write_subset` makes each part a clip folder of its own.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from splitcast.data.clips import ClipDataset, DataError, open_clips, write_meta

log = logging.getLogger("splitcast.data")

SPLIT_SEEDS = {"train": 1000, "val": 2000, "test": 3000, "calib": 4000}
DEFAULT_CLIPS = {"train": 120, "val": 30, "test": 30, "calib": 30}
DEFAULT_FRAMES = 48


@dataclass(frozen=True)
class ClipSplit:
    """Which clips of one dataset train, calibrate and test a fit, and the seed that drew them."""

    seed: int
    train: tuple[str, ...]
    calib: tuple[str, ...]
    test: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            **{part: list(getattr(self, part)) for part in ("train", "calib", "test")},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClipSplit:
        return cls(int(data["seed"]), *(tuple(data[p]) for p in ("train", "calib", "test")))


MIN_HELD_OUT_CLIPS = 3
"""Fewer calibration or test clips than this make intervals over clips too wide to mean much."""


def split_by_clip(
    names: Sequence[str], calib_fraction: float, test_fraction: float, seed: int
) -> ClipSplit:
    """Shuffle whole clips with `seed` and cut them into train, calibration and test parts
    (at least one clip each): frames of one clip are alike, so a split by frame would test on
    near-copies of the training frames."""
    if len(names) < 3:
        raise DataError(
            f"a fit needs at least 3 clips (train, calibration, test), the data has {len(names)}; "
            "import with a smaller --clip-len or bring more footage"
        )
    order = list(names)
    random.Random(seed).shuffle(order)
    test = max(1, round(len(order) * test_fraction))
    calib = max(1, round(len(order) * calib_fraction))
    if test + calib >= len(order):
        raise DataError(
            f"{len(order)} clips leave none to train on with {calib} calibration and {test} "
            "test clips; lower the fractions or bring more clips"
        )
    if min(test, calib) < MIN_HELD_OUT_CLIPS:
        log.warning(
            "only %d calibration and %d test clips: choices and confidence intervals rest on "
            "very few clips (at least %d each is better; import with a smaller --clip-len)",
            calib,
            test,
            MIN_HELD_OUT_CLIPS,
        )
    return ClipSplit(
        seed, tuple(order[calib + test :]), tuple(order[:calib]), tuple(order[calib : calib + test])
    )


def write_subset(dataset: ClipDataset, names: Sequence[str], out: Path) -> ClipDataset:
    """A clip folder at `out` holding `names` of `dataset` as links to the clip folders (no
    copies), with the dataset's meta.json restricted to them."""
    if dataset.root is None:
        raise DataError("only a clip folder on disk can be split")
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = out / name
        if not link.is_symlink():
            link.symlink_to((dataset.root / name).resolve(), target_is_directory=True)
    info = dict(dataset.meta.info)
    if isinstance(info.get("clips"), dict):
        info["clips"] = {k: v for k, v in info["clips"].items() if k in names}
    info["subset_of"] = str(dataset.root.resolve())
    write_meta(out, replace(dataset.meta, info=info), names)
    return open_clips(out)
