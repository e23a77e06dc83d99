"""Read Cityscapes video snippets (leftImg8bit_sequence) with their sparse gtFine labels.

Layout under `root`:

    leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (preferred)
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        (mapped to trainIds)

Cityscapes ships each finely labelled image as the 20th frame of a 30-frame snippet recorded at
17 fps, so one snippet becomes one clip whose `labelled` holds the frame(s) that have a gtFine
file; labels of frames outside the sequences present are ignored. The 19-class trainIds are what
the label space here uses; `labelIds` files are mapped with the public Cityscapes table and ids
that have no trainId become 255 (ignore).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from splitcast.data.classes import IGNORE_INDEX
from splitcast.data.clips import (
    Clip,
    ClipDataset,
    DataError,
    DatasetMeta,
    check_label,
    read_label,
    read_rgb,
)

log = logging.getLogger("splitcast.data")

SNIPPET_FRAMES = 30

_FRAME_NAME = re.compile(r"^(.+)_(\d{6})_(\d{6})_leftImg8bit\.png$")
_LABEL_NAME = re.compile(r"^(.+)_(\d{6})_(\d{6})_gtFine_(labelTrainIds|labelIds)\.png$")

# Cityscapes label id -> 19-class trainId, for the ids that are evaluated (the rest: ignore).
_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
LABEL_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_ID_TO_TRAIN_ID[list(_TRAIN_ID)] = list(_TRAIN_ID.values())

_Key = tuple[str, int]  # (city, sequence number)


class CityscapesClip:
    """One 30-frame snippet; frames and labels are read from disk on access."""

    def __init__(
        self,
        name: str,
        frames: list[Path],
        labels: dict[int, tuple[Path, bool]],
        frame_size: tuple[int, int],
        meta: DatasetMeta,
    ) -> None:
        self.name = name
        self.num_frames = len(frames)
        self.labelled = tuple(sorted(labels))
        self._frames = frames
        self._labels = labels
        self._frame_shape = (frame_size[1], frame_size[0], 3)
        self._meta = meta

    def frame(self, index: int) -> np.ndarray:
        return read_rgb(self._frames[index])

    def label(self, index: int) -> np.ndarray | None:
        entry = self._labels.get(index)
        if entry is None:
            return None
        path, train_ids = entry
        label = read_label(path)
        if not train_ids:
            label = LABEL_ID_TO_TRAIN_ID[label]
        check_label(label, self._frame_shape, self._meta, str(path))
        return label


def open_cityscapes_sequences(root: Path, split: str = "val", fps: float = 17.0) -> ClipDataset:
    """Open the snippets of one split; `fps` is Cityscapes' recording rate (17 fps)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Cityscapes root not found: {root}")
    sequences = root / "leftImg8bit_sequence"
    if not (sequences / split).is_dir():
        found = (
            sorted(p.name for p in sequences.iterdir() if p.is_dir()) if sequences.is_dir() else []
        )
        raise DataError(
            f"{sequences / split} not found (splits present: {', '.join(found) or 'none'})"
        )
    frames = _frame_files(sequences / split)
    if not frames:
        raise DataError(f"no *_leftImg8bit.png frames under {sequences / split}")
    labels = _label_files(root / "gtFine" / split)
    if not labels:
        log.warning("no gtFine labels for split %s under %s: clips are unlabelled", split, root)
    meta = DatasetMeta(
        fps=fps,
        info={"layout": "cityscapes-sequence", "source": str(root.resolve()), "split": split},
    )
    clips: list[Clip] = []
    for key in sorted(frames):
        city, seq = key
        by_number = frames[key]
        for snippet in _snippets(key, sorted(by_number)):
            paths = [by_number[n] for n in snippet]
            size = _image_size(paths[0])
            snippet_labels: dict[int, tuple[Path, bool]] = {}
            for index, number in enumerate(snippet):
                entry = labels.get((city, seq, number))
                if entry is None:
                    continue
                label_size, frame_size = _image_size(entry[0]), _image_size(paths[index])
                if label_size != frame_size:
                    raise DataError(
                        f"label {entry[0]} is {label_size[0]}x{label_size[1]} but its frame "
                        f"{paths[index]} is {frame_size[0]}x{frame_size[1]}"
                    )
                snippet_labels[index] = entry
            name = f"{city}_{seq:06d}_{snippet[0]:06d}"
            clips.append(CityscapesClip(name, paths, snippet_labels, size, meta))
    return ClipDataset(meta, clips, root)


def _frame_files(folder: Path) -> dict[_Key, dict[int, Path]]:
    found: dict[_Key, dict[int, Path]] = defaultdict(dict)
    for path in folder.glob("*/*_leftImg8bit.png"):
        match = _FRAME_NAME.match(path.name)
        if match:
            found[(match.group(1), int(match.group(2)))][int(match.group(3))] = path
    return found


def _label_files(folder: Path) -> dict[tuple[str, int, int], tuple[Path, bool]]:
    """(city, seq, frame) -> (path, holds trainIds); trainIds win over labelIds."""
    found: dict[tuple[str, int, int], tuple[Path, bool]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*/*_gtFine_label*.png")):
        match = _LABEL_NAME.match(path.name)
        if not match:
            continue
        key = (match.group(1), int(match.group(2)), int(match.group(3)))
        train_ids = match.group(4) == "labelTrainIds"
        if train_ids or key not in found:
            found[key] = (path, train_ids)
    return found


def _snippets(key: _Key, numbers: list[int]) -> list[list[int]]:
    """Cut sorted frame numbers into 30-frame snippets; a run that does not fill whole
    snippets means frames are missing."""
    runs: list[list[int]] = [[numbers[0]]]
    for number in numbers[1:]:
        if number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    for i, run in enumerate(runs):
        if len(run) % SNIPPET_FRAMES:
            neighbours = [runs[j] for j in (i - 1, i + 1) if 0 <= j < len(runs)]
            holes = sorted(n for other in neighbours for n in _hole(run, other))
            missing = f"; missing {', '.join(f'{n:06d}' for n in holes[:10])}" if holes else ""
            raise DataError(
                f"snippet {key[0]}_{key[1]:06d} has gaps in frame numbers: frames "
                f"{run[0]:06d}..{run[-1]:06d} are {len(run)} in a row, not whole "
                f"{SNIPPET_FRAMES}-frame snippets{missing}"
            )
    return [run[i : i + SNIPPET_FRAMES] for run in runs for i in range(0, len(run), SNIPPET_FRAMES)]


def _hole(run: list[int], other: list[int]) -> range:
    """Frame numbers between two runs, if too few to separate two snippets (else none)."""
    hole = range(min(run[-1], other[-1]) + 1, max(run[0], other[0]))
    return hole if len(hole) < SNIPPET_FRAMES else range(0)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
