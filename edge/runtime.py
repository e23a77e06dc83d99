"""The edge's on-time step on one frame, with the local model in ONNX Runtime or PyTorch.

The step itself (preprocess -> local model -> combine with the answer at its age -> class ids)
is `splitcast.models.edge_step.EdgeStep`, the same code offline evaluation runs. This module
picks what runs the local model and keeps the recent grey frames the combiner may measure
motion on. By default the local model runs in ONNX Runtime, one exported graph for the
local-only pass and, for a combiner that fuses features, one for the fused pass
(`splitcast.models.onnx_program`): faster than PyTorch on a CPU, which leaves more of a shared
machine to everything else. In PyTorch it runs with channels-last weights
(`splitcast.models.memory_format`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from splitcast.edge.connection import ExpectedServer
from splitcast.models.answers import AS_SENT, AnswerUse
from splitcast.models.codec import codec_set
from splitcast.models.combiners import Combiner, LocalPass
from splitcast.models.devices import CPU
from splitcast.models.edge_step import EdgeStep, LocalRunner, TorchLocal
from splitcast.models.local import LocalModel
from splitcast.models.memory_format import inference_layout
from splitcast.models.motion import FrameHistory, grey
from splitcast.models.onnx_program import OnnxProgram, onnx_or_none
from splitcast.models.providers import resolve_providers
from splitcast.models.registry import SplitSystem
from splitcast.models.runtime_names import RUNTIMES


class _GraphLocal:
    """The local model as exported graphs: local-only, and fused when the combiner fuses.
    ONNX Runtime takes and returns arrays in host memory on every execution provider."""

    device = CPU

    def __init__(self, local_only: OnnxProgram, fused: OnnxProgram | None) -> None:
        self.local_only = local_only
        self.fused = fused

    def describe(self) -> str:
        return f"onnxruntime on {', '.join(self.local_only.providers)}"

    def __call__(self, frames: torch.Tensor) -> LocalPass:
        return _GraphPass(self, frames)


class _GraphPass:
    def __init__(self, graphs: _GraphLocal, frames: torch.Tensor) -> None:
        self.graphs = graphs
        self.frames = frames
        self._local_only: torch.Tensor | None = None

    def local_only(self) -> torch.Tensor:
        if self._local_only is None:
            self._local_only = self.graphs.local_only(self.frames)
        return self._local_only

    def fused(self, features: torch.Tensor) -> torch.Tensor:
        if self.graphs.fused is None:
            raise RuntimeError("this runtime has no fused graph: its combiner does not fuse")
        return self.graphs.fused(self.frames, features.float())


def local_runner(
    model: LocalModel,
    local_size: tuple[int, int],
    combiner: Combiner,
    runtime: str = RUNTIMES[0],
    channels_last: bool = True,
    providers: Sequence[str] = ("cpu",),
    device: torch.device = CPU,
    precision: str = "fp32",
) -> LocalRunner:
    """What runs the local model for the edge: exported graphs in ONNX Runtime with
    `providers` in order of preference (falling back to PyTorch when the export fails, with a
    warning; a provider this onnxruntime lacks is an error) or PyTorch on `device` in
    `precision` (`splitcast.models.devices`)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r} is not one of {RUNTIMES}")
    model = model.eval()
    if runtime == RUNTIMES[0]:
        frame = torch.zeros(1, 3, *local_size)
        threads = torch.get_num_threads()
        chosen = resolve_providers(providers)

        def export() -> _GraphLocal:
            local_only = OnnxProgram(model, (frame,), ["frame"], threads, chosen)
            if not combiner.fuses_features:
                return _GraphLocal(local_only, None)
            downlink = torch.zeros(1, *model.downlink_shape(local_size))
            fused = OnnxProgram(model, (frame, downlink), ["frame", "downlink"], threads, chosen)
            return _GraphLocal(local_only, fused)

        graphs = onnx_or_none(export, "the local model")
        if graphs is not None:
            return graphs
    layout = inference_layout(model, channels_last=channels_last)
    return TorchLocal(model.to(device), layout, precision)


class LocalRuntime:
    """A checkpoint's edge step at batch 1 on live frames (`splitcast.edge.model.EdgeModel`),
    with the grey images of recent numbered frames (to measure how the scene moved since an
    answer's frame; by default as many as the answer horizon spans at the model's rate)."""

    def __init__(
        self,
        system: SplitSystem,
        runtime: str = RUNTIMES[0],
        channels_last: bool = True,
        providers: Sequence[str] = ("cpu",),
        device: torch.device = CPU,
        precision: str = "fp32",
    ) -> None:
        config = system.config
        self.combiner = system.combiner()
        self.expected = ExpectedServer.for_system(system)
        self.codecs = codec_set(system.bottleneck)
        runner = local_runner(
            system.local,
            config.local_size,
            self.combiner,
            runtime,
            channels_last,
            providers,
            device,
            precision,
        )
        self.step = EdgeStep(self.combiner, runner, config.local_size)
        self.local_size = config.local_size
        self.horizon_ticks = float(config.horizon_ticks)
        self.history = FrameHistory(config.horizon_ticks + 1)
        self.last_pass: LocalPass | None = None
        """The local model's pass on the last frame (for comparison panels)."""

    def use_at(self, age_ticks: float) -> AnswerUse:
        return self.combiner.use_at(age_ticks)

    def describe(self) -> str:
        return self.step.local.describe()

    @torch.inference_mode()
    def segment(
        self,
        rgb: np.ndarray,
        answer: dict[str, np.ndarray] | None,
        output_size: tuple[int, int] | None = None,
        use: AnswerUse = AS_SENT,
        sequence: int | None = None,
        source_sequence: int | None = None,
    ) -> np.ndarray:
        """See `splitcast.edge.model.EdgeModel.segment` (answer tensors may also be torch
        tensors on the CPU)."""
        (fitted,), local = self.step.prepare([rgb])
        self.last_pass = local
        if sequence is not None and self.step.motion is not None:
            self.history.add(sequence, grey(fitted))
        known = sequence is not None and source_sequence is not None
        frames, sources = ([sequence], [source_sequence]) if known else ([], [])
        tensors = None
        if answer is not None:
            tensors = {name: torch.as_tensor(value) for name, value in answer.items()}
        scores = self.step.scores(local, tensors, use, self.history, frames, sources)
        return self._ids(scores, output_size)

    @torch.inference_mode()
    def ids(self, scores: np.ndarray, output_size: tuple[int, int] | None) -> np.ndarray:
        return self._ids(torch.as_tensor(scores), output_size)

    @torch.inference_mode()
    def local_only_ids(self, output_size: tuple[int, int] | None = None) -> np.ndarray:
        assert self.last_pass is not None, "segment a frame first"
        return self._ids(self.last_pass.local_only(), output_size)

    def _ids(self, scores: torch.Tensor, output_size: tuple[int, int] | None) -> np.ndarray:
        ids = self.step.ids(scores, tuple(output_size or self.local_size))
        return ids[0].to(torch.uint8).numpy()
