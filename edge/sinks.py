"""Where the edge's per-frame results go: an overlay video and a JSON-lines log."""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
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


MAX_PENDING_FRAMES = 512
"""Frames waiting to be drawn at most: about 0.5 MB each at the scene's size."""
VIDEO_THREAD_NICE = 19
"""The video thread's nice value: it takes only CPU time nothing else wants."""

VideoFrame = tuple[np.ndarray, np.ndarray, str, dict[str, np.ndarray | None] | None]
"""What `OverlayVideoWriter.write` takes: the frame, its class ids, the banner, the panels."""


class BackgroundVideo:
    """An overlay video drawn and encoded on a thread of its own, at low CPU priority where the
    system allows it (Linux), so the edge's loop never waits for it: drawing and encoding four
    panels costs about as much as the edge step itself, and on a small machine shared with a
    server that is what made the edge skip frames. Frames are written in order, and `close`
    writes every frame handed over before it returns, so a stopped run's video still holds one
    frame per logged output. At most `max_pending` frames wait; beyond that `write` blocks,
    which slows the loop visibly (skipped frames) instead of filling memory. With `hold`,
    drawing starts only once that many frames wait (or at `close`): a short run's video is then
    drawn after it, when the edge no longer needs the CPU or the interpreter, whose lock the
    drawing's Python parts would otherwise take turns with the edge's loop for."""

    def __init__(
        self, writer: OverlayVideoWriter, max_pending: int = MAX_PENDING_FRAMES, hold: int = 0
    ) -> None:
        self.path = writer.path
        self._writer = writer
        self._pending: queue.Queue[VideoFrame | None] = queue.Queue(max_pending)
        self._hold = min(hold, max_pending)
        self._released = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="overlay-video", daemon=True)
        self._thread.start()

    def write(self, frame: VideoFrame) -> None:
        self._raise_error()
        self._pending.put(frame)
        if self._pending.qsize() >= self._hold:
            self._released.set()

    @property
    def pending(self) -> int:
        """Frames handed over and not yet written."""
        return self._pending.qsize()

    def close(self) -> None:
        """Write every pending frame, then close the file."""
        self._released.set()
        self._pending.put(None)
        self._thread.join()
        self._raise_error()

    def _run(self) -> None:
        if sys.platform == "linux":  # a thread's own nice value; elsewhere this is the process
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), VIDEO_THREAD_NICE)
        self._released.wait()
        try:
            while (item := self._pending.get()) is not None:
                self._writer.write(*item)
        except BaseException as exc:  # handed to the loop's thread
            self._error = exc
            while self._pending.get() is not None:  # unblock the loop; nothing more is drawn
                pass
        finally:
            self._writer.close()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise OSError(f"cannot write the video {self.path}: {self._error}")


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
