"""The clip format on disk and the `Clip` interface every reader yields.

A clip dataset is a directory:

    DIR/meta.json                      fps, class names, ignore index, palette, generator settings
    DIR/<clip>/frames/000000.jpg       frames numbered from 0 without gaps (.jpg or .png)
    DIR/<clip>/labels/000000.png       uint8 class ids (optional per frame; 255 = ignore)

Readers for other layouts (a user's video plus masks, the authors' Hugging Face columns,
Cityscapes sequences) produce the same `Clip` objects, so sampling, training and evaluation
never care where frames came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from splitcast.data.classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX

FORMAT_NAME = "splitcast-clips"
FORMAT_VERSION = 1
FRAME_EXTENSIONS = (".jpg", ".png")
_INDEX_NAME = re.compile(r"^(\d{6})\.(jpg|png)$")


class DataError(ValueError):
    """Data that cannot be used as it is; the message names the file and the problem."""


@dataclass(frozen=True)
class DatasetMeta:
    """What every consumer must know about a dataset's frames and labels."""

    fps: float
    classes: tuple[str, ...] = CITYSCAPES_CLASSES
    ignore_index: int = IGNORE_INDEX
    palette: tuple[tuple[int, int, int], ...] = CITYSCAPES_PALETTE
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self, clips: Sequence[str]) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "fps": self.fps,
            "classes": list(self.classes),
            "ignore_index": self.ignore_index,
            "palette": [list(c) for c in self.palette],
            "info": self.info,
            "clips": list(clips),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path) -> DatasetMeta:
        if data.get("format") != FORMAT_NAME:
            raise DataError(
                f"{source} is not a {FORMAT_NAME} meta.json (format={data.get('format')!r})"
            )
        try:
            classes = tuple(str(c) for c in data["classes"])
            palette = tuple(
                tuple(int(v) for v in c) for c in data.get("palette", CITYSCAPES_PALETTE)
            )
            return cls(
                fps=float(data["fps"]),
                classes=classes,
                ignore_index=int(data.get("ignore_index", IGNORE_INDEX)),
                palette=palette,  # type: ignore[arg-type]
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source} is malformed: {exc}") from None


class Clip(Protocol):
    """A sequence of frames with labels on some of them."""

    name: str
    num_frames: int
    labelled: tuple[int, ...]

    def frame(self, index: int) -> np.ndarray:
        """RGB uint8 [H, W, 3]."""
        ...

    def label(self, index: int) -> np.ndarray | None:
        """Class ids uint8 [H, W] (ignore index for unlabelled pixels), or None."""
        ...


def check_label(
    label: np.ndarray, frame_shape: tuple[int, ...], meta: DatasetMeta, where: str
) -> None:
    """Raise DataError if a label does not fit its frame or holds ids outside the label space."""
    if label.shape != tuple(frame_shape[:2]):
        raise DataError(
            f"{where}: label is {label.shape[1]}x{label.shape[0]} but the frame is "
            f"{frame_shape[1]}x{frame_shape[0]}"
        )
    values = np.unique(label)
    unknown = values[(values >= meta.num_classes) & (values != meta.ignore_index)]
    if unknown.size:
        raise DataError(
            f"{where}: unknown class ids {unknown.tolist()} "
            f"(classes are 0..{meta.num_classes - 1}, ignore is {meta.ignore_index})"
        )


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"missing frame {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def read_label(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise DataError(
                    f"label {path} must be a single-channel PNG of class ids, got mode {image.mode}"
                )
            return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"missing label {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read label {path}: {exc}") from None


class DiskClip:
    """A clip folder of the splitcast format."""

    def __init__(self, root: Path, meta: DatasetMeta) -> None:
        self.root = root
        self.name = root.name
        self.meta = meta
        frames_dir = root / "frames"
        if not frames_dir.is_dir():
            raise DataError(f"clip {root} has no frames/ folder")
        self._frames = _numbered_files(frames_dir, FRAME_EXTENSIONS, "frame")
        if not self._frames:
            raise DataError(f"clip {root} has no frames in {frames_dir}")
        self.num_frames = len(self._frames)
        labels_dir = root / "labels"
        self._labels = (
            _numbered_files(labels_dir, (".png",), "label") if labels_dir.is_dir() else {}
        )
        extra = sorted(set(self._labels) - set(self._frames))
        if extra:
            raise DataError(f"clip {root} has labels for frames that do not exist: {extra[:5]}")
        self.labelled = tuple(sorted(self._labels))

    def frame(self, index: int) -> np.ndarray:
        return read_rgb(self._frames[index])

    def label(self, index: int) -> np.ndarray | None:
        path = self._labels.get(index)
        return None if path is None else read_label(path)

    def checked_label(self, index: int, frame_shape: tuple[int, ...]) -> np.ndarray | None:
        label = self.label(index)
        if label is not None:
            check_label(label, frame_shape, self.meta, str(self._labels[index]))
        return label


def _numbered_files(folder: Path, extensions: tuple[str, ...], kind: str) -> dict[int, Path]:
    """Map index -> file for NNNNNN.ext files; frames must be numbered 0..N-1 without gaps."""
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        match = _INDEX_NAME.match(path.name)
        if match and path.suffix in extensions:
            index = int(match.group(1))
            if index in found:
                raise DataError(
                    f"{folder} has two {kind}s numbered {index}: {found[index].name}, {path.name}"
                )
            found[index] = path
    if kind == "frame" and found and sorted(found) != list(range(len(found))):
        missing = sorted(set(range(max(found) + 1)) - set(found))
        raise DataError(
            f"{folder} is missing frames {missing[:10]} (frames must be numbered 0..N-1)"
        )
    return dict(sorted(found.items()))


@dataclass
class ClipDataset:
    """A dataset's meta and its clips, in a stable order."""

    meta: DatasetMeta
    clips: list[Clip]
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)


def open_clips(path: str | Path) -> ClipDataset:
    """Open a clip-format directory written by `splitcast data build` or `data import`; or,
    with no meta.json, the authors' Hugging Face layout (a folder of *.parquet) or one split
    of Cityscapes sequences (`ROOT/leftImg8bit_sequence/SPLIT`), so that every command that
    takes clips takes those too."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"dataset directory not found: {root}")
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        return _open_other_layout(root)
    try:
        data = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_path} is not valid JSON: {exc}") from None
    meta = DatasetMeta.from_json(data, meta_path)
    names = data.get("clips") or sorted(p.name for p in root.iterdir() if (p / "frames").is_dir())
    clips: list[Clip] = []
    for name in names:
        clip_dir = root / name
        if not clip_dir.is_dir():
            raise DataError(f"{meta_path} lists clip {name!r} but {clip_dir} does not exist")
        clips.append(DiskClip(clip_dir, meta))
    return ClipDataset(meta, clips, root)


def _open_other_layout(root: Path) -> ClipDataset:
    if root.parent.name == "leftImg8bit_sequence":
        from splitcast.data.cityscapes import open_cityscapes_sequences

        return open_cityscapes_sequences(root.parent.parent, root.name)
    if next(root.rglob("*.parquet"), None) is not None:
        from splitcast.data.hf_layout import open_hf_layout

        return open_hf_layout(root)
    raise DataError(
        f"{root} has no meta.json (a splitcast clip directory), no *.parquet files (the "
        "Hugging Face layout) and is not a Cityscapes leftImg8bit_sequence/SPLIT folder"
    )


class ClipWriter:
    """Writes one clip folder; frames as JPEG (quality) or PNG, labels as PNG."""

    def __init__(
        self, root: Path, name: str, frame_format: str = "jpg", jpeg_quality: int = 95
    ) -> None:
        if frame_format not in ("jpg", "png"):
            raise ValueError(f"frame format must be jpg or png, got {frame_format!r}")
        self.root = root / name
        self.frame_format = frame_format
        self.jpeg_quality = jpeg_quality
        (self.root / "frames").mkdir(parents=True, exist_ok=True)
        (self.root / "labels").mkdir(parents=True, exist_ok=True)

    def write(self, index: int, rgb: np.ndarray, label: np.ndarray | None = None) -> None:
        image = Image.fromarray(rgb)
        frame_path = self.root / "frames" / f"{index:06d}.{self.frame_format}"
        if self.frame_format == "jpg":
            image.save(frame_path, quality=self.jpeg_quality, subsampling=0, optimize=False)
        else:
            image.save(frame_path, compress_level=6)
        if label is not None:
            Image.fromarray(label.astype(np.uint8)).save(
                self.root / "labels" / f"{index:06d}.png", compress_level=6
            )


def write_meta(root: Path, meta: DatasetMeta, clip_names: Sequence[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "meta.json"
    path.write_text(json.dumps(meta.to_json(clip_names), indent=2) + "\n")
    return path
