"""The edge's own view of how the scene moved while an answer was in flight.

A late answer describes the frame the server last saw. The server can only guess how the scene
moved since (its forecast); the edge has every frame since and can measure it. `backward_flow`
estimates, for each pixel of the current frame, where it was in the answer's frame (OpenCV's
DIS optical flow, its fastest preset: a small fraction of the edge step at the local size),
and `warp_to_now` moves the answer's on-time class map along it, on the answer's own
coarse grid so that the edge never resamples a full-size tensor. `FrameHistory` keeps the
small grey images a live edge needs to do this for the answers it may still use.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from splitcast.models.layers import grid_positions


def grey(rgb: np.ndarray) -> np.ndarray:
    """The uint8 grey image flow is estimated on, from an RGB frame at the local size."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


class MotionEstimator:
    """Dense backward flow between two grey frames of the same size (not thread-safe: one per
    thread)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def backward_flow(self, current: np.ndarray, source: np.ndarray) -> torch.Tensor:
        """Flow [H, W, 2] (x, y in pixels) such that current[y, x] shows what source showed at
        (x + flow_x, y + flow_y)."""
        if current.shape != source.shape:
            raise ValueError(f"frames differ in size: {current.shape} and {source.shape}")
        return torch.from_numpy(self._dis.calc(current, source, None))


def warp_to_now(maps: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """`maps` [B, C, h, w] of the answers' frames moved to the current frames along `flows`
    [B, H, W, 2] (`MotionEstimator.backward_flow`, any frame size H x W): each cell takes the
    bilinear value where its content was; cells whose content came from outside the answer's
    frame take the nearest border value."""
    height, width = maps.shape[-2:]
    scale = torch.tensor(
        [2.0 / flows.shape[2], 2.0 / flows.shape[1]], dtype=maps.dtype
    )  # pixels -> grid_sample's [-1, 1] units
    shift = F.adaptive_avg_pool2d(flows.permute(0, 3, 1, 2).to(maps.dtype), (height, width))
    grid = grid_positions(maps) + shift * scale.view(1, 2, 1, 1)
    return F.grid_sample(
        maps, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=False
    )


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
