"""Where the edge's per-frame results go: an overlay video and a JSON-lines log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from splitcast.data.classes import colorize

BANNER_HEIGHT = 22


class OverlayVideoWriter:
    """Writes each frame with its segmentation blended in and a one-line banner (mp4v/MJPG);
    with `panels`, a 2 x 2 comparison per frame instead: the remote's answer used late, its
    forecast, local-only and splitcast's output, each labelled."""

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        alpha: float = 0.5,
        panels: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self.size = (width, height)
        self.alpha = alpha
        self.grid = 2 if panels else 1
        self._writer = cv2.VideoWriter(
            str(self.path),
            cv2.VideoWriter_fourcc(*fourcc),
            fps,
            (width * self.grid, height * self.grid + BANNER_HEIGHT),
        )
        if not self._writer.isOpened():
            raise OSError(f"opencv cannot write video to {self.path} (use .mp4 or .avi)")

    def write(
        self,
        rgb: np.ndarray,
        class_ids: np.ndarray,
        banner: str,
        panels: dict[str, np.ndarray | None] | None = None,
    ) -> None:
        """`panels`: the comparison's other three views by label (None: not available)."""
        width, height = self.size
        frame = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        views = [*(panels or {}).items(), (OUTPUT_LABEL, class_ids)] if self.grid > 1 else []
        canvas = np.zeros((height * self.grid + BANNER_HEIGHT, width * self.grid, 3), np.uint8)
        for index, (label, ids) in enumerate(views or [("", class_ids)]):
            row, column = divmod(index, self.grid)
            top, left = BANNER_HEIGHT + row * height, column * width
            canvas[top : top + height, left : left + width] = self._tile(frame, ids, label)
        _text(canvas, banner, 6, 16)
        self._writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))

    def _tile(self, frame: np.ndarray, class_ids: np.ndarray | None, label: str) -> np.ndarray:
        if class_ids is None:
            tile = (frame * 0.35).astype(np.uint8)
            label = f"{label}: not available" if label else label
        else:
            labels = cv2.resize(class_ids, self.size, interpolation=cv2.INTER_NEAREST)
            tile = cv2.addWeighted(frame, 1.0 - self.alpha, colorize(labels), self.alpha, 0.0)
        if label:
            _text(tile, label, 6, 18)
        return tile

    def close(self) -> None:
        self._writer.release()


OUTPUT_LABEL = "splitcast"


def _text(image: np.ndarray, text: str, x: int, y: int) -> None:
    """White text with a dark outline, readable on any segmentation colour."""
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(image, text, (x, y), font, 0.45, colour, thickness, cv2.LINE_AA)


class JsonlLog:
    """One JSON object per line, flushed as written so a crash loses nothing already logged."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
