"""The edge's on-time step: the local model on the current frame, using the downlink or not.

With feature fusion the downlink enters the local model; in late-average mode the local model
runs local-only and its log-probabilities are pooled with the received ones
(`splitcast.models.downlink`), the on-time answer moved along the flow the runtime measures
from the current frame back to the answer's frame (`splitcast.models.motion`). By default the
local model runs in ONNX Runtime, one exported graph for the local-only pass and one for the
fused pass (`splitcast.models.onnx_program`):
2-3x faster than PyTorch here, which leaves more of a shared machine to everything else. In
PyTorch it runs with channels-last weights (`splitcast.models.memory_format`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from splitcast.data.images import fit
from splitcast.models.downlink import AS_SENT, AnswerUse, average
from splitcast.models.layers import resize
from splitcast.models.local import LocalModel
from splitcast.models.memory_format import inference_layout
from splitcast.models.motion import FrameHistory, MotionEstimator, grey
from splitcast.models.onnx_program import OnnxProgram, onnx_or_none
from splitcast.models.runtime_names import RUNTIMES

Step = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


class LocalRuntime:
    """Runs the local model at the configuration's local input size on one of `RUNTIMES`."""

    def __init__(
        self,
        model: LocalModel,
        local_size: tuple[int, int],
        channels_last: bool = True,
        runtime: str = RUNTIMES[0],
        late_average: bool = False,
        history_frames: int = 32,
    ) -> None:
        """`late_average`: the downlink holds class log-probabilities to average with
        (`splitcast.models.downlink.average`), not features to fuse; the runtime then keeps
        the grey images of the last `history_frames` numbered frames, to measure how the
        scene moved since an answer's frame."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r} is not one of {RUNTIMES}")
        self.model = model.eval()
        self.local_size = local_size
        self.late_average = late_average
        self.history = FrameHistory(history_frames)
        self.motion = MotionEstimator()
        self.run = self._step(runtime, channels_last)

    def _step(self, runtime: str, channels_last: bool) -> Step:
        if runtime == RUNTIMES[0]:
            frame = torch.zeros(1, 3, *self.local_size)
            downlink = torch.zeros(1, *self.model.downlink_shape(self.local_size))
            threads = torch.get_num_threads()
            # LocalModel.forward(frame, downlink=None): one graph per pass, the fused one only
            # when features are fused.
            programs = onnx_or_none(
                lambda: (
                    OnnxProgram(self.model, (frame,), ["frame"], threads),
                    None
                    if self.late_average
                    else OnnxProgram(self.model, (frame, downlink), ["frame", "downlink"], threads),
                ),
                "the local model",
            )
            if programs is not None:
                local_only, fused = programs
                return lambda image, features: (
                    local_only(image) if features is None else fused(image, features.float())
                )
        layout = inference_layout(self.model, channels_last=channels_last)
        return lambda image, features: self.model(image.contiguous(memory_format=layout), features)

    @torch.inference_mode()
    def segment(
        self,
        rgb: np.ndarray,
        downlink: torch.Tensor | None,
        output_size: tuple[int, int] | None = None,
        use: AnswerUse = AS_SENT,
        sequence: int | None = None,
        source_sequence: int | None = None,
    ) -> np.ndarray:
        """Class ids uint8 at `output_size` (default: the local input size); `downlink=None`
        means local-only, else it is used as `use` (`downlink_use` for its age). Scores
        are resized before the argmax, as offline evaluation does. Late average: `sequence`
        numbers this frame and `source_sequence` the answer's; the on-time answer is moved
        along the flow between them when both frames are in the history (not moved
        otherwise)."""
        local_rgb = fit(rgb, self.local_size)
        frame = torch.from_numpy(local_rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        if self.late_average:
            scores = self.run(frame, None)
            if sequence is not None:
                self.history.add(sequence, grey(local_rgb))
            if downlink is not None:
                flows = self._flows(sequence, source_sequence) if use.warped_weight else None
                scores = average(scores, downlink.float(), use, flows)
        else:
            scores = self.run(frame, None if downlink is None else downlink * use.weight)
        if output_size is not None and tuple(output_size) != tuple(scores.shape[-2:]):
            scores = resize(scores, output_size)
        return scores[0].argmax(0).to(torch.uint8).numpy()

    def _flows(self, sequence: int | None, source_sequence: int | None) -> torch.Tensor | None:
        """The flow [1, H, W, 2] from frame `sequence` back to `source_sequence`, or None
        when either is not in the history."""
        if sequence is None or source_sequence is None:
            return None
        current, source = self.history.get(sequence), self.history.get(source_sequence)
        if current is None or source is None:
            return None
        return self.motion.backward_flow(current, source).unsqueeze(0)
