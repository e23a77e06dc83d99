"""Runs the remote model for the server: one call per processed frame, state per stream."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splitcast.cloud.onnx_encoder import onnx_encoder
from splitcast.data.images import fit
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import EncodedTensor, get_codec
from splitcast.models.combiners import AnswerTensors
from splitcast.models.devices import autocast, resolve_device, resolve_precision
from splitcast.models.memory_format import inference_layout, inference_layout_3d
from splitcast.models.onnx_program import onnx_or_none
from splitcast.models.registry import SplitSystem
from splitcast.models.remote_stream import RemoteStream
from splitcast.models.runtime_names import RUNTIMES

EncodedAnswer = dict[str, EncodedTensor]
"""One answer's named tensors as bytes."""


@dataclass(frozen=True)
class Work:
    """One decoded frame of one stream for the model, told the delay to answer for."""

    stream: RemoteStream
    sequence: int
    image_rgb: np.ndarray
    delay_ticks: float


class RemoteRuntime:
    """Remote model + the combiner's answer + its codec. Not thread-safe: the server calls it
    from one thread.

    The per-frame encoder runs in ONNX Runtime by default (`splitcast.cloud.onnx_encoder`);
    the temporal model and heads in PyTorch (exported too they ran slower). Every PyTorch part
    gets channels-last weights and the context a channels-last 5-D layout
    (`splitcast.models.memory_format`), which measured faster for both combiners.
    """

    def __init__(
        self,
        system: SplitSystem,
        codec: str | None = None,
        encoder: str = RUNTIMES[0],
        device: torch.device | None = None,
        precision: str = "fp32",
        compile: bool = False,
        channels_last: bool = True,
    ) -> None:
        """`codec`: the answer codec's name (default: the configuration's); `encoder`: one
        of `RUNTIMES` (on a GPU the encoder runs in PyTorch there); `device` and `precision`
        (`splitcast.models.devices`): where the remote model runs; the codec stays on the
        CPU; `compile`: the temporal model and heads through `torch.compile` (compiled during
        the warm-up, which then takes a while); `channels_last`: the PyTorch parts' layout
        (off: PyTorch's default, as before it measured faster)."""
        if encoder not in RUNTIMES:
            raise ValueError(f"encoder runtime {encoder!r} is not one of {RUNTIMES}")
        self.device = device or torch.device("cpu")
        self.precision = precision
        if self.device.type != "cpu":
            system.remote.to(self.device)
            encoder = RUNTIMES[1]
        self.system = system
        self.config = system.config
        self.combiner = system.combiner(codec)
        self.codec = get_codec(codec or system.config.codec, system.bottleneck)
        self.encode = self._encoder(encoder)
        self.context_layout = torch.contiguous_format
        if channels_last:
            inference_layout(system.remote)
            self.context_layout = inference_layout_3d(system.remote.temporal)
        self.combine_context = (
            torch.compile(self.combiner.answer, dynamic=False) if compile else self.combiner.answer
        )

    def _encoder(self, runtime: str) -> Callable[[torch.Tensor], torch.Tensor]:
        remote = self.system.remote
        if runtime == RUNTIMES[0]:
            program = onnx_or_none(
                lambda: onnx_encoder(
                    remote, self.system.config.remote_size, torch.get_num_threads()
                ),
                "the encoder",
            )
            if program is not None:
                return program
        layout = inference_layout(remote.backbone, remote.neck)
        return lambda frame: remote.encode(frame.contiguous(memory_format=layout))

    def new_stream(self) -> RemoteStream:
        return RemoteStream(self.config.context_frames)

    def warm_up(self, steps: int = 2) -> None:
        """First calls allocate and pick kernels; do that before any client waits on them."""
        stream = self.new_stream()
        blank = np.zeros((*self.config.remote_size, 3), dtype=np.uint8)
        for sequence in range(steps):
            self.step(stream, sequence, blank, 0.0)

    def answer(
        self, stream: RemoteStream, sequence: int, image_rgb: np.ndarray, delay_ticks: float
    ) -> tuple[AnswerTensors, list[int]]:
        """Push one decoded frame into the stream; returns its answer [1, C, h, w] per name
        (before the codec) and the sequence numbers of the context frames it came from
        (oldest first)."""
        return self.answer_batch([Work(stream, sequence, image_rgb, delay_ticks)])[0]

    @torch.inference_mode()
    def answer_batch(self, batch: Sequence[Work]) -> list[tuple[AnswerTensors, list[int]]]:
        """`answer` for frames of different streams in one pass of the temporal model and
        heads (each stream's context and delay its own); in `batch`'s order."""
        contexts, used = [], []
        with autocast(self.device, self.precision):
            for work in batch:
                pixels = torch.from_numpy(fit(work.image_rgb, self.config.remote_size))
                frame = pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
                sequences, context = work.stream.push(
                    work.sequence, self.encode(frame.to(self.device))
                )
                contexts.append(context)
                used.append(sequences)
            delays = [work.delay_ticks for work in batch]
            delay = torch.tensor(delays, dtype=torch.float32, device=self.device)
            context = torch.cat(contexts).contiguous(memory_format=self.context_layout)
            answer = self.combine_context(context, delay)[0]
        answer = {name: tensor.float().cpu() for name, tensor in answer.items()}
        return [
            ({name: tensor[index : index + 1] for name, tensor in answer.items()}, used[index])
            for index in range(len(batch))
        ]

    def step(
        self, stream: RemoteStream, sequence: int, image_rgb: np.ndarray, delay_ticks: float
    ) -> tuple[EncodedAnswer, list[int]]:
        """`answer`, each tensor encoded with the codec."""
        answer, used = self.answer(stream, sequence, image_rgb, delay_ticks)
        return self.encode_answer(answer), used

    def encode_answer(self, answer: AnswerTensors) -> EncodedAnswer:
        """Each tensor of an answer [1, C, h, w] encoded with the codec."""
        return {name: self.codec.encode(tensor[0].numpy()) for name, tensor in answer.items()}


def warm_runtime(
    model: SplitSystem | str | Path,
    codec: str | None = None,
    encoder: str = RUNTIMES[0],
    device: str = "auto",
    precision: str | None = None,
    compile: bool = False,
    channels_last: bool = True,
) -> RemoteRuntime:
    """A server's runtime for `model` (a loaded system, a packaged checkpoint's name, a folder
    or a configuration name) on `device` (`splitcast.models.devices`), warmed up."""
    system = model if isinstance(model, SplitSystem) else load_system(model)
    where = resolve_device(device)
    runtime = RemoteRuntime(
        system,
        codec,
        encoder=encoder,
        device=where,
        precision=resolve_precision(precision, where),
        compile=compile,
        channels_last=channels_last,
    )
    runtime.warm_up()
    return runtime
