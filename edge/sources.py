"""Frame sources for the edge: a video file, a folder of images, a camera or network stream,
or a built-in moving scene that needs no files."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from splitcast.data.clips import Clip

MOVING_SCENE = "moving-scene"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")
log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source that cannot be opened or read."""


class FrameSource(Protocol):
    fps: float
    name: str
    num_frames: int | None
    live: bool
    """Frames arrive in real time by themselves (a camera): the edge does not pace them."""
    dropped: int
    """Frames a live source discarded because the edge was still busy with an older one."""

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 frames [H, W, 3] in capture order."""
        ...


def read_ahead(frames: Iterator[np.ndarray], depth: int = 8) -> Iterator[np.ndarray]:
    """`frames` decoded or rendered on a thread of their own, up to `depth` ahead, as a camera
    captures while the edge computes: the edge's loop then spends its frame period on the
    edge step alone. An error of the source is raised here, in order; closing the iterator
    stops the thread."""
    ahead = _ReadAhead(frames, depth)
    try:
        while (frame := ahead.next()) is not None:
            yield frame
    finally:
        ahead.stop()


class _ReadAhead:
    """The thread behind `read_ahead`: frames in a bounded queue, then None (the end) or the
    source's error."""

    def __init__(self, frames: Iterator[np.ndarray], depth: int) -> None:
        self._frames = frames
        self._ready: queue.Queue[np.ndarray | Exception | None] = queue.Queue(depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="read-ahead", daemon=True)
        self._thread.start()

    def next(self) -> np.ndarray | None:
        item = self._ready.get()
        if isinstance(item, Exception):
            raise item
        return item

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _produce(self) -> None:
        try:
            for frame in self._frames:
                if not self._offer(frame):
                    return
            self._offer(None)
        except Exception as exc:  # raised again by `next`, in the loop's thread
            self._offer(exc)

    def _offer(self, item: np.ndarray | Exception | None) -> bool:
        """Queue `item` unless stopped first (the consumer gone); whether it was queued."""
        while not self._stopped.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


class VideoFileSource:
    """Frames of a video file read with opencv, optionally limited to the first `max_frames`."""

    live = False
    dropped = 0

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

    live = False
    dropped = 0

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

    live = False
    dropped = 0

    def __init__(self, clip: Clip, fps: float) -> None:
        self.clip = clip
        self.fps = fps
        self.name = clip.name
        self.num_frames = clip.num_frames

    def frames(self) -> Iterator[np.ndarray]:
        for index in range(self.clip.num_frames):
            yield self.clip.frame(index)


class ImageFolderSource:
    """The images of a folder in name order, at `fps`. An image that cannot be read ends the
    run there (with a warning), as the end of a video would."""

    live = False
    dropped = 0

    def __init__(self, folder: str | Path, fps: float, max_frames: int | None = None) -> None:
        self.folder = Path(folder)
        self.paths = sorted(
            path for path in self.folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES
        )[:max_frames]
        if not self.paths:
            raise SourceError(f"{self.folder} holds no {', '.join(IMAGE_SUFFIXES)} images")
        self.fps = fps
        self.name = self.folder.name
        self.num_frames = len(self.paths)

    def frames(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("cannot read %s as an image: the run ends here", path)
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class CaptureSource:
    """A camera (an index such as 0, or a device path) or a network stream (rtsp, http) read by
    opencv on a thread of its own that keeps only the newest frame: an edge slower than the
    camera skips frames (`dropped` counts them) instead of falling behind. The run ends when
    the stream ends, or when no frame came for `stall_s` seconds."""

    live = True

    def __init__(self, spec: str, max_frames: int | None = None, stall_s: float = 5.0) -> None:
        target: int | str = int(spec) if spec.isdigit() else spec
        self.capture = cv2.VideoCapture(target)
        if not self.capture.isOpened():
            self.capture.release()
            what = "stream" if spec.startswith(STREAM_SCHEMES) else "camera"
            raise SourceError(
                f"cannot open {what} {spec!r} with opencv {cv2.__version__} (backends: "
                f"{', '.join(_backends(what))}); check that it exists, is reachable and is "
                "not held by another program"
            )
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps <= 240 else 30.0
        self.name = spec
        self.num_frames = max_frames
        self.stall_s = stall_s
        self.dropped = 0
        self._latest: np.ndarray | None = None
        self._fresh = threading.Condition()
        self._ended = False

    def _read(self) -> None:
        while not self._ended:
            ok, bgr = self.capture.read()
            with self._fresh:
                if not ok:
                    self._ended = True
                elif self._latest is not None:
                    self.dropped += 1
                self._latest = bgr if ok else self._latest
                self._fresh.notify()

    def frames(self) -> Iterator[np.ndarray]:
        reader = threading.Thread(target=self._read, name="capture", daemon=True)
        reader.start()
        count = 0
        try:
            while self.num_frames is None or count < self.num_frames:
                with self._fresh:
                    got = self._fresh.wait_for(
                        lambda: self._latest is not None or self._ended, self.stall_s
                    )
                    bgr, self._latest = self._latest, None
                if bgr is None:
                    if not got:
                        log.warning(
                            "%s sent no frame for %.0f s: the run ends", self.name, self.stall_s
                        )
                    return
                count += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            self._ended = True
            reader.join(timeout=self.stall_s)
            self.capture.release()


def _backends(what: str) -> list[str]:
    registry = cv2.videoio_registry
    ids = registry.getStreamBackends() if what == "stream" else registry.getCameraBackends()
    return [registry.getBackendName(backend) for backend in ids] or ["none"]


def open_source(
    spec: str, max_frames: int | None = None, fps: float = 30.0, seed: int = 0
) -> FrameSource:
    """`moving-scene` for the built-in scene; a camera index (`0`), a device path
    (`/dev/video0`) or an rtsp/http URL; a folder of images (at `fps`); or a video file."""
    if spec == MOVING_SCENE:
        return MovingSceneSource(fps=fps, num_frames=max_frames or 150, seed=seed)
    if spec.isdigit() or spec.startswith(("/dev/video", *STREAM_SCHEMES)):
        return CaptureSource(spec, max_frames=max_frames)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, fps, max_frames=max_frames)
    if path.is_file():
        return VideoFileSource(path, max_frames=max_frames)
    raise SourceError(
        f"source {spec!r}: no such file or folder; use a video file, a folder of images, a "
        f"camera index (0), a device (/dev/video0), an rtsp:// or http:// URL, or {MOVING_SCENE}"
    )
