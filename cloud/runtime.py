"""Runs the remote model for the server: one call per processed frame, state per stream."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from splitcast.cloud.onnx_encoder import onnx_encoder
from splitcast.data.images import fit
from splitcast.models.codec import EncodedTensor, get_codec
from splitcast.models.downlink import check_codec, downlink_shape, remote_downlink
from splitcast.models.memory_format import inference_layout
from splitcast.models.onnx_program import onnx_or_none
from splitcast.models.registry import SplitSystem, max_context_gap
from splitcast.models.remote import StreamState, context_delay
from splitcast.models.runtime_names import RUNTIMES


@dataclass
class StreamContext:
    """A stream's FIFO of encodings and the sequence numbers of the frames behind them."""

    state: StreamState
    sequences: deque[int] = field(default_factory=deque)


class RemoteRuntime:
    """Remote model + downlink codec. Not thread-safe: the server calls it from one thread.

    The per-frame encoder runs in ONNX Runtime by default (`splitcast.cloud.onnx_encoder`); in
    PyTorch it gets channels-last weights (`splitcast.models.memory_format`). The temporal model
    and heads keep PyTorch's default layout: channels-last made them slower (52 -> 65 ms).
    """

    def __init__(
        self,
        system: SplitSystem,
        codec: str | None = None,
        encoder: str = RUNTIMES[0],
    ) -> None:
        """`codec`: the downlink codec's name (default: the configuration's); `encoder`: one
        of `RUNTIMES`."""
        if encoder not in RUNTIMES:
            raise ValueError(f"encoder runtime {encoder!r} is not one of {RUNTIMES}")
        self.system = system
        self.encode = self._encoder(encoder)
        self.config = system.config
        name = codec or system.config.codec
        check_codec(system.config, name)
        self.codec = get_codec(name, system.bottleneck)
        self.feature_shape = downlink_shape(system)
        self.max_gap = max_context_gap(system.config)

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

    def new_stream(self) -> StreamContext:
        k = self.config.context_frames
        return StreamContext(self.system.remote.stream_init(), deque(maxlen=k))

    def warm_up(self, steps: int = 2) -> None:
        """First calls allocate and pick kernels; do that before any client waits on them."""
        context = self.new_stream()
        blank = np.zeros((*self.config.remote_size, 3), dtype=np.uint8)
        for sequence in range(steps):
            self.step(context, sequence, blank, 0.0)

    @torch.inference_mode()
    def downlink(
        self, context: StreamContext, image_rgb: np.ndarray, delay_ticks: float
    ) -> np.ndarray:
        """Push one decoded frame into the stream's FIFO; its downlink [C, H, W] before the
        codec (features, or class log-probabilities in late-average mode)."""
        pixels = torch.from_numpy(fit(image_rgb, self.config.remote_size))
        frame = pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        delay = torch.tensor([delay_ticks], dtype=torch.float32)
        window = self.system.remote.push(context.state, self.encode(frame))
        downlink = remote_downlink(self.system, window, delay, self.config.local_size)
        return downlink[0].numpy()

    def step(
        self, context: StreamContext, sequence: int, image_rgb: np.ndarray, delay_ticks: float
    ) -> tuple[EncodedTensor, list[int]]:
        """Push one decoded frame into the stream; returns its encoded downlink features and
        the sequence numbers of the context frames they came from (oldest first). A model
        trained with context gaps is told the delay in steps of that context: frames skipped
        while busy space it wider than a tick (`context_delay`)."""
        context.sequences.append(sequence)
        missing = self.config.context_frames - len(context.sequences)
        used = [context.sequences[0]] * missing + list(context.sequences)
        delay = context_delay(delay_ticks, used, self.max_gap)
        features = self.downlink(context, image_rgb, delay)
        return self.codec.encode(features), used
