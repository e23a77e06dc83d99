"""The edge's per-frame step, the one implementation live use, offline evaluation, the live
replay, calibration and the benchmarks share: preprocess -> local model -> combine with the
answer at its age -> class ids.

The local model runs through a `LocalRunner`: PyTorch (`TorchLocal`, batched offline, on any
device) or any faster runtime with the same two passes (the edge's ONNX graphs). Frames to
measure motion on come from a `GreyFrames` source: the live edge's recent history, or a clip
offline. Answers and motion arrive on the CPU (from a codec, from OpenCV) and are moved to the
local model's device before combining; class ids come back on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from splitcast.data.images import fit
from splitcast.models.answers import AnswerUse
from splitcast.models.combiners import AnswerTensors, Combiner, LocalPass
from splitcast.models.devices import CPU, autocast
from splitcast.models.layers import class_ids, resize
from splitcast.models.local import LocalModel
from splitcast.models.motion import MotionEstimator, grey


class GreyFrames(Protocol):
    """Grey local-size images by sequence number (None when not kept)."""

    def get(self, sequence: int) -> np.ndarray | None: ...


class LocalRunner(Protocol):
    """Starts the local model on a batch of frames [B, 3, H, W] in [0, 1]; its passes' outputs
    are on `device`."""

    device: torch.device

    def __call__(self, frames: torch.Tensor) -> LocalPass: ...

    def describe(self) -> str:
        """What runs the local model, and where (for logs and summaries)."""
        ...


class TorchLocal:
    """The local model in PyTorch on the device its weights are on, in `precision` there
    (`splitcast.models.devices`); the encoder runs once per batch, shared by every answer the
    frames are combined with."""

    def __init__(
        self,
        model: LocalModel,
        memory_format: torch.memory_format = torch.contiguous_format,
        precision: str = "fp32",
    ) -> None:
        self.model = model
        self.memory_format = memory_format
        self.device = next(model.parameters()).device
        self.precision = precision

    def describe(self) -> str:
        return f"torch on {self.device} ({self.precision})"

    def __call__(self, frames: torch.Tensor) -> LocalPass:
        frames = frames.to(self.device, non_blocking=True)
        return _TorchPass(self, frames.contiguous(memory_format=self.memory_format))


class _TorchPass:
    def __init__(self, runner: TorchLocal, frames: torch.Tensor) -> None:
        self.runner = runner
        with autocast(runner.device, runner.precision):
            self.features = runner.model.encode(frames)
        self._local_only: torch.Tensor | None = None

    def local_only(self) -> torch.Tensor:
        if self._local_only is None:
            self._local_only = self._decode(None)
        return self._local_only

    def fused(self, features: torch.Tensor) -> torch.Tensor:
        return self._decode(features)

    def _decode(self, features: torch.Tensor | None) -> torch.Tensor:
        with autocast(self.runner.device, self.runner.precision):
            return self.runner.model.decode(self.features, features).float()


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """An RGB uint8 image [H, W, 3] as a float tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


class ClipGreys:
    """`GreyFrames` of a clip, computed on first use: what a live edge would have kept."""

    def __init__(self, frame: Callable[[int], np.ndarray], local_size: tuple[int, int]) -> None:
        self.frame = frame
        self.local_size = local_size
        self._greys: dict[int, np.ndarray] = {}

    def get(self, sequence: int) -> np.ndarray | None:
        if sequence not in self._greys:
            self._greys[sequence] = grey(fit(self.frame(sequence), self.local_size))
        return self._greys[sequence]


class EdgeStep:
    """Local model + combiner on frames at the local input size."""

    def __init__(self, combiner: Combiner, local: LocalRunner, local_size: tuple[int, int]) -> None:
        self.combiner = combiner
        self.local = local
        self.local_size = local_size
        self.device = local.device
        self.motion = MotionEstimator() if combiner.needs_motion else None

    def prepare(self, rgbs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], LocalPass]:
        """Frames fitted to the local size, and the local model started on them."""
        fitted = [fit(rgb, self.local_size) for rgb in rgbs]
        return fitted, self.local(torch.stack([to_tensor(rgb) for rgb in fitted]))

    def scores(
        self,
        local: LocalPass,
        answer: AnswerTensors | None,
        use: AnswerUse,
        greys: GreyFrames | None = None,
        frames: Sequence[int] = (),
        sources: Sequence[int] = (),
    ) -> torch.Tensor:
        """Class scores [B, classes, h, w] on the local model's head grid (`ids` resizes them):
        local-only without an answer, else combined as
        `use`; the flow from each of `frames` back to its answer's frame in `sources` is
        measured on `greys` when the combiner uses it (not moved when a frame is missing)."""
        if answer is None:
            return local.local_only()
        flows = self._flows(use, greys, frames, sources)
        if self.device != CPU:
            answer = {name: tensor.to(self.device) for name, tensor in answer.items()}
            flows = None if flows is None else flows.to(self.device)
        return self.combiner.combine(local, answer, use, flows)

    def ids(self, scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Class ids [B, *size]: scores resized to the local input size (where the local model
        used to end, so every published figure stands), then to `size`, before the argmax."""
        if tuple(size) != tuple(self.local_size):
            scores = resize(scores.float(), self.local_size)
        return class_ids(scores, size)

    def _flows(
        self,
        use: AnswerUse,
        greys: GreyFrames | None,
        frames: Sequence[int],
        sources: Sequence[int],
    ) -> torch.Tensor | None:
        if self.motion is None or not use.warped_weight or greys is None or not frames:
            return None
        pairs = [(greys.get(t), greys.get(s)) for t, s in zip(frames, sources, strict=True)]
        if any(current is None or source is None for current, source in pairs):
            return None
        return torch.from_numpy(np.stack([self.motion.backward_flow(c, s) for c, s in pairs]))
