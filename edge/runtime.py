"""The edge's on-time step: the local model on the current frame, fused with features or not."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from splitcast.models.local import LocalModel


class LocalRuntime:
    """Runs the local model with PyTorch at the configuration's local input size."""

    def __init__(self, model: LocalModel, local_size: tuple[int, int]) -> None:
        self.model = model.eval()
        self.local_size = local_size

    @torch.inference_mode()
    def segment(self, rgb: np.ndarray, downlink: torch.Tensor | None) -> np.ndarray:
        """Class ids [h, w] uint8 at the local input size; `downlink=None` means local-only."""
        height, width = self.local_size
        if rgb.shape[:2] != (height, width):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        frame = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        logits = self.model(frame, downlink)
        return logits[0].argmax(0).to(torch.uint8).numpy()
