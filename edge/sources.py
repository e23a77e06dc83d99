"""Frame sources for the edge: a video file, or a built-in moving scene that needs no files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from splitcast.data.clips import Clip

MOVING_SCENE = "moving-scene"


class SourceError(RuntimeError):
    """A source that cannot be opened or read."""


class FrameSource(Protocol):
    fps: float
    name: str
    num_frames: int | None

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 frames [H, W, 3] in capture order."""
        ...


class VideoFileSource:
    """Frames of a video file read with opencv, optionally limited to the first `max_frames`."""

    def __init__(self, path: str | Path, max_frames: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        capture = cv2.VideoCapture(str(self.path))
        opened = capture.isOpened()
        fps = capture.get(cv2.CAP_PROP_FPS)
        declared_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        if not opened:
            raise SourceError(f"opencv cannot open {self.path} as a video")
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise SourceError(f"{self.path} does not declare a frame rate")
        self.fps = float(fps)
        self.name = self.path.name
        self.max_frames = max_frames
        counts = [n for n in (declared_frames, max_frames) if n and n > 0]
        self.num_frames = min(counts) if counts else None

    def frames(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            count = 0
            while self.max_frames is None or count < self.max_frames:
                ok, bgr = capture.read()
                if not ok:
                    return
                count += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


class MovingSceneSource:
    """A procedural road scene seen from a moving car: deterministic for a seed, no files needed.

    Lane markings and roadside poles stream past (ego motion) while cars cross the view, so
    consecutive frames differ the way driving video does.
    """

    def __init__(
        self,
        width: int = 512,
        height: int = 256,
        fps: float = 30.0,
        num_frames: int = 150,
        seed: int = 0,
    ) -> None:
        if width < 64 or height < 32:
            raise SourceError(f"moving scene needs at least 64x32 pixels, got {width}x{height}")
        self.width, self.height, self.fps = width, height, fps
        self.num_frames = num_frames
        self.name = f"{MOVING_SCENE}(seed={seed})"
        rng = np.random.default_rng(seed)
        self._cars = [
            (
                rng.uniform(0, 1),
                rng.uniform(-0.012, 0.012),
                rng.uniform(0.55, 0.8),
                tuple(int(c) for c in rng.integers(30, 230, 3)),
            )
            for _ in range(4)
        ]
        self._noise = rng.integers(0, 12, (height, width, 1), dtype=np.uint8)

    def render(self, index: int) -> np.ndarray:
        """The frame at `index` (RGB uint8)."""
        w, h = self.width, self.height
        horizon = h // 2
        image = np.empty((h, w, 3), dtype=np.uint8)
        image[:horizon] = np.linspace((70, 130, 200), (180, 210, 235), horizon, dtype=np.uint8)[
            :, None
        ]
        image[horizon:] = (96, 96, 96)
        centre = w // 2
        road = np.array([[centre - w // 16, horizon], [centre + w // 16, horizon], [w, h], [0, h]])
        cv2.fillPoly(image, [road], (128, 64, 128))
        self._draw_stream(image, index, horizon, centre)
        for phase, speed, depth, colour in self._cars:
            x = int(((phase + speed * index) % 1.2 - 0.1) * w)
            y = int(horizon + (h - horizon) * (depth - 0.5))
            size = int(h * 0.25 * depth)
            cv2.rectangle(image, (x, y - size // 2), (x + size * 2, y + size // 2), colour, -1)
        return cv2.add(image, np.repeat(self._noise, 3, axis=2))

    def _draw_stream(self, image: np.ndarray, index: int, horizon: int, centre: int) -> None:
        """Lane dashes and poles that move outward as the car drives forward."""
        h = image.shape[0]
        for k in range(6):
            z = ((k + index * 0.08) % 6) / 6.0
            depth = z**2
            y = int(horizon + (h - horizon) * depth)
            half = max(1, int(2 + 10 * depth))
            cv2.rectangle(
                image,
                (centre - half // 2, y),
                (centre + half // 2, min(h, y + half * 3)),
                (255, 255, 255),
                -1,
            )
            pole_x = int(centre + (image.shape[1] * 0.55) * depth + 8)
            cv2.line(
                image,
                (pole_x, y),
                (pole_x, max(0, y - int(h * 0.6 * depth) - 4)),
                (153, 153, 153),
                max(1, half // 2),
            )

    def frames(self) -> Iterator[np.ndarray]:
        for index in range(self.num_frames):
            yield self.render(index)


class ClipSource:
    """The frames of one dataset clip, at the dataset's frame rate (live evaluation)."""

    def __init__(self, clip: Clip, fps: float) -> None:
        self.clip = clip
        self.fps = fps
        self.name = clip.name
        self.num_frames = clip.num_frames

    def frames(self) -> Iterator[np.ndarray]:
        for index in range(self.clip.num_frames):
            yield self.clip.frame(index)


def open_source(
    spec: str, max_frames: int | None = None, fps: float = 30.0, seed: int = 0
) -> FrameSource:
    """`moving-scene` for the built-in scene, otherwise a path to a video file."""
    if spec == MOVING_SCENE:
        return MovingSceneSource(fps=fps, num_frames=max_frames or 150, seed=seed)
    return VideoFileSource(spec, max_frames=max_frames)
