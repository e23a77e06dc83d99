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
    """Writes each frame with its segmentation blended in and a one-line banner (mp4v/MJPG)."""

    def __init__(
        self, path: str | Path, fps: float, width: int, height: int, alpha: float = 0.5
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self.size = (width, height)
        self.alpha = alpha
        self._writer = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height + BANNER_HEIGHT)
        )
        if not self._writer.isOpened():
            raise OSError(f"opencv cannot write video to {self.path} (use .mp4 or .avi)")

    def write(self, rgb: np.ndarray, class_ids: np.ndarray, banner: str) -> None:
        width, height = self.size
        frame = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        labels = cv2.resize(class_ids, (width, height), interpolation=cv2.INTER_NEAREST)
        blended = cv2.addWeighted(frame, 1.0 - self.alpha, colorize(labels), self.alpha, 0.0)
        canvas = np.zeros((height + BANNER_HEIGHT, width, 3), dtype=np.uint8)
        canvas[BANNER_HEIGHT:] = blended
        cv2.putText(
            canvas, banner, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
        )
        self._writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()


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
