"""The edge's own view of how the scene moved while an answer was in flight.

A late answer describes the frame the server last saw. The server can only guess how the scene
moved since (its forecast); the edge has every frame since and can measure it. `backward_flow`
estimates, for each pixel of the current frame, where it was in the answer's frame (OpenCV's
DIS optical flow, its fastest preset: a small fraction of the edge step at the local size),
and the late average (`splitcast.models.combiners.warp_to_now`) moves the answer's on-time
class map along it. `FrameHistory` keeps the small grey images a live edge needs to do this for
the answers it may still use. Nothing here needs PyTorch: the edge-only install measures flow
with this module too.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np


def grey(rgb: np.ndarray) -> np.ndarray:
    """The uint8 grey image flow is estimated on, from an RGB frame at the local size."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


class MotionEstimator:
    """Dense backward flow between two grey frames of the same size (not thread-safe: one per
    thread)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def backward_flow(self, current: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Flow [H, W, 2] (x, y in pixels) such that current[y, x] shows what source showed at
        (x + flow_x, y + flow_y)."""
        if current.shape != source.shape:
            raise ValueError(f"frames differ in size: {current.shape} and {source.shape}")
        return self._dis.calc(current, source, None)


class FrameHistory:
    """The grey local-size images of the last `size` frames, by sequence number."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a frame history holds at least one frame, not {size}")
        self.size = size
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()

    def add(self, sequence: int, frame: np.ndarray) -> None:
        self._frames[sequence] = frame
        while len(self._frames) > self.size:
            self._frames.popitem(last=False)

    def get(self, sequence: int) -> np.ndarray | None:
        return self._frames.get(sequence)
