"""Runs the remote model for the server: one call per processed frame, state per stream."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from splitcast.models.codec import EncodedTensor, get_codec
from splitcast.models.registry import SplitSystem
from splitcast.models.remote import StreamState


class RemoteRuntime:
    """Remote model + downlink codec. Not thread-safe: the server calls it from one thread."""

    def __init__(self, system: SplitSystem) -> None:
        self.system = system
        self.config = system.config
        self.codec = get_codec(system.config.codec)
        self.feature_shape = system.local.downlink_shape(system.config.local_size)

    def new_stream(self) -> StreamState:
        return self.system.remote.stream_init()

    @torch.inference_mode()
    def step(self, state: StreamState, image_rgb: np.ndarray, delay_ticks: float) -> EncodedTensor:
        """Push one decoded frame into the stream and return its encoded downlink features."""
        height, width = self.config.remote_size
        if image_rgb.shape[:2] != (height, width):
            image_rgb = cv2.resize(image_rgb, (width, height), interpolation=cv2.INTER_AREA)
        frame = torch.from_numpy(image_rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        delay = torch.tensor([delay_ticks], dtype=torch.float32)
        downlink, _ = self.system.remote.stream_step(state, frame, delay, self.config.local_size)
        return self.codec.encode(downlink[0].numpy())
