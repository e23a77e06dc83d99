"""Import a user's own video plus per-frame masks into the splitcast clip format.

The video is decoded with opencv and cut into consecutive clips of `clip_len` frames. Masks
live in one folder as `<frame index>.png` (0-based, any zero padding: `42.png`, `000042.png`),
single-channel class ids (255 = ignore): Cityscapes trainIds by default, or ids into the user's
own class names (`classes`, e.g. background and person). Frames without a mask are allowed and
stay unlabelled.

A final remainder shorter than `clip_len` is kept as a shorter clip when it has at least half
of `clip_len` frames (enough for temporal context; a sliver is not worth a clip); otherwise it
is dropped, logged as a warning and recorded in meta.json as `info["dropped_frames"]`.

The output is written to a hidden temporary folder beside `out` and moved into place only when
every frame and mask has been checked, so a failed import never leaves a half-written dataset.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from splitcast.data.classes import IGNORE_INDEX, palette_for
from splitcast.data.clips import (
    ClipDataset,
    ClipWriter,
    DataError,
    DatasetMeta,
    check_label,
    open_clips,
    read_label,
    write_meta,
)

log = logging.getLogger("splitcast.data")

_MASK_NAME = re.compile(r"^(\d+)\.png$", re.IGNORECASE)


def import_video(
    video: Path,
    masks: Path,
    out: Path,
    clip_len: int,
    fps: float | None = None,
    frame_format: str = "jpg",
    progress: bool = True,
    classes: Sequence[str] | None = None,
) -> ClipDataset:
    """Write `video` + `masks` as a clip dataset at `out` (must not exist or be empty).

    `fps` overrides the frame rate opencv reads from the container, which some files lack or
    get wrong; the model's delay ticks are counted at this rate. `classes` names the masks'
    class ids in order (default: the Cityscapes trainIds).
    """
    video, masks, out = Path(video), Path(masks), Path(out)
    if clip_len < 1:
        raise DataError(f"clip_len must be at least 1, got {clip_len}")
    if fps is not None and not fps > 0:
        raise DataError(f"fps must be positive, got {fps}")
    if not video.is_file():
        raise DataError(f"video file not found: {video}")
    if not masks.is_dir():
        raise DataError(f"masks folder not found: {masks}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output {out} already exists and is not an empty folder")
    mask_files = _mask_files(masks)

    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise DataError(f"opencv cannot open video {video} (unsupported codec or container?)")
        rate = fps if fps is not None else capture.get(cv2.CAP_PROP_FPS)
        if not rate or not math.isfinite(rate) or rate <= 0:
            raise DataError(f"{video} does not state its frame rate; pass fps explicitly")
        meta = DatasetMeta(
            fps=float(rate),
            **_label_space(classes),
            info={
                "importer": "video",
                "source": str(video.resolve()),
                "masks": str(masks.resolve()),
                "clip_len": clip_len,
            },
        )
        bar = tqdm(
            total=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))) or None,
            unit="frame",
            desc=f"import {video.name}",
            disable=not progress,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.with_name(f".{out.name}.importing-{uuid.uuid4().hex[:8]}")
        staging.mkdir()
        try:
            with bar:
                frames = _decoded_frames(capture, bar)
                names, dropped = _write_clips(
                    frames, mask_files, staging, meta, clip_len, frame_format, video.stem
                )
            meta.info["dropped_frames"] = dropped
            write_meta(staging, meta, names)
            if out.exists():
                out.rmdir()
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        capture.release()
    return open_clips(out)


def _label_space(classes: Sequence[str] | None) -> dict[str, Any]:
    """DatasetMeta's class names and palette for user-named classes (Cityscapes' otherwise)."""
    if classes is None:
        return {}
    names = tuple(classes)
    if not names or any(not name.strip() for name in names):
        raise DataError(f"class names must be non-empty, got {list(names)}")
    if len(set(names)) != len(names):
        raise DataError(f"class names must be distinct, got {list(names)}")
    if len(names) > IGNORE_INDEX:
        raise DataError(f"at most {IGNORE_INDEX} classes fit uint8 masks, got {len(names)}")
    return {"classes": names, "palette": palette_for(len(names))}


def _mask_files(masks: Path) -> dict[int, Path]:
    """Map frame index -> mask file; a PNG not named by a frame index is refused, not skipped."""
    found: dict[int, Path] = {}
    for path in sorted(masks.iterdir()):
        if path.suffix.lower() != ".png":
            continue
        match = _MASK_NAME.match(path.name)
        if not match:
            raise DataError(
                f"mask {path} is not named by its frame index (expected e.g. 000042.png or 42.png)"
            )
        index = int(match.group(1))
        if index in found:
            raise DataError(
                f"{masks} has two masks for frame {index}: {found[index].name}, {path.name}"
            )
        found[index] = path
    return found


def _decoded_frames(capture: cv2.VideoCapture, bar: tqdm) -> Iterator[np.ndarray]:
    """RGB frames in order until the video ends."""
    while True:
        ok, bgr = capture.read()
        if not ok:
            return
        bar.update()
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _write_clips(
    frames: Iterator[np.ndarray],
    mask_files: dict[int, Path],
    root: Path,
    meta: DatasetMeta,
    clip_len: int,
    frame_format: str,
    stem: str,
) -> tuple[list[str], int]:
    """Write frames into clip folders under `root`; returns kept clip names and dropped frames."""
    writers: list[ClipWriter] = []
    count = 0
    for index, rgb in enumerate(frames):
        if index % clip_len == 0:
            writers.append(ClipWriter(root, f"{stem}_{index // clip_len:05d}", frame_format))
        writers[-1].write(index % clip_len, rgb, _checked_mask(mask_files.get(index), rgb, meta))
        count = index + 1
    if count == 0:
        raise DataError("opencv opened the video but decoded no frames from it")
    beyond = sorted(i for i in mask_files if i >= count)
    if beyond:
        files = ", ".join(mask_files[i].name for i in beyond[:5])
        raise DataError(
            f"{len(beyond)} mask(s) are numbered beyond the video's last frame {count - 1}: {files}"
        )
    tail = count % clip_len
    dropped = 0
    if tail and 2 * tail < clip_len:
        shutil.rmtree(writers.pop().root)
        dropped = tail
        log.warning(
            "dropped the last %d frame(s) (%d with masks): fewer than half of clip_len=%d",
            tail,
            sum(1 for i in mask_files if i >= count - tail),
            clip_len,
        )
    if not writers:
        raise DataError(
            f"the video has only {count} frame(s), fewer than half of clip_len={clip_len}"
        )
    return [writer.root.name for writer in writers], dropped


def _checked_mask(path: Path | None, rgb: np.ndarray, meta: DatasetMeta) -> np.ndarray | None:
    if path is None:
        return None
    label = read_label(path)
    check_label(label, rgb.shape, meta, f"mask {path}")
    return label
