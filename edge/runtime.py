"""The edge's on-time step: the local model on the current frame, fused with features or not."""

from __future__ import annotations

import numpy as np
import torch

from splitcast.data.images import fit
from splitcast.models.layers import resize
from splitcast.models.local import LocalModel
from splitcast.models.memory_format import inference_layout


class LocalRuntime:
    """Runs the local model with PyTorch at the configuration's local input size (channels-last:
    see `splitcast.models.memory_format`)."""

    def __init__(
        self, model: LocalModel, local_size: tuple[int, int], channels_last: bool = True
    ) -> None:
        self.model = model.eval()
        self.memory_format = inference_layout(model, channels_last=channels_last)
        self.local_size = local_size

    @torch.inference_mode()
    def segment(
        self,
        rgb: np.ndarray,
        downlink: torch.Tensor | None,
        output_size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Class ids uint8 at `output_size` (default: the local input size); `downlink=None`
        means local-only. Logits are resized before the argmax, as offline evaluation does."""
        pixels = torch.from_numpy(fit(rgb, self.local_size))
        frame = pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        logits = self.model(frame.contiguous(memory_format=self.memory_format), downlink)
        if output_size is not None and tuple(output_size) != tuple(logits.shape[-2:]):
            logits = resize(logits, output_size)
        return logits[0].argmax(0).to(torch.uint8).numpy()
