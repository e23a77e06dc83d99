"""What `EdgeClient` needs of a model, whatever runs it, and how a user's `--model` is opened.

Two implementations exist: `splitcast.edge.runtime.LocalRuntime` (a checkpoint with the
training stack: the local model in ONNX Runtime or PyTorch, the combiner in PyTorch) and
`splitcast.edge.exported.ExportedEdge` (an export folder: every step in ONNX Runtime, numpy
and OpenCV, for an install without PyTorch). Nothing in this module imports PyTorch; a
checkpoint is opened only when one is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from splitcast.edge.connection import ExpectedServer
from splitcast.edge.exported import MANIFEST, ExportedEdge
from splitcast.models.answers import AS_SENT, AnswerUse
from splitcast.models.codec import Codec
from splitcast.models.motion import FrameHistory
from splitcast.models.runtime_names import RUNTIMES

if TYPE_CHECKING:
    from splitcast.models.registry import SplitSystem


class EdgeModel(Protocol):
    """The edge's on-time step on one frame, and what it expects of a server."""

    expected: ExpectedServer
    """The model, combiner, answer tensors, local size and frame rate a server must match."""
    codecs: dict[str, Codec]
    """Every downlink codec this edge decodes, by name."""
    horizon_ticks: float
    """The answer horizon: the oldest answer age (ticks) its per-age records cover."""
    history: FrameHistory
    """Grey images of recent frames, to measure motion since an answer's frame (the client
    sizes it to the oldest answer it uses)."""

    def use_at(self, age_ticks: float) -> AnswerUse:
        """How an answer `age_ticks` old is used (the per-age record calibration chose)."""
        ...

    def segment(
        self,
        rgb: np.ndarray,
        answer: dict[str, np.ndarray] | None,
        output_size: tuple[int, int] | None = None,
        use: AnswerUse = AS_SENT,
        sequence: int | None = None,
        source_sequence: int | None = None,
    ) -> np.ndarray:
        """uint8 class ids [H, W] at `output_size` (default: the local input size) of an RGB
        frame: local-only when `answer` (decoded tensors [1, C, h, w]) is None, else combined
        as `use`; `sequence` and `source_sequence` number the frame and the answer's frame
        (to measure motion between them when the combiner uses it)."""
        ...

    def ids(self, scores: np.ndarray, output_size: tuple[int, int] | None) -> np.ndarray:
        """uint8 class ids of scores [1, C, h, w] resized to `output_size` (default: local)."""
        ...

    def local_only_ids(self, output_size: tuple[int, int] | None = None) -> np.ndarray:
        """The last segmented frame's local-only class ids."""
        ...

    def describe(self) -> str:
        """What runs the model, and where (for logs and summaries)."""
        ...


def is_export(model: object) -> bool:
    """Whether `model` names an export folder (one holding `manifest.json`)."""
    return isinstance(model, (str, Path)) and (Path(model) / MANIFEST).is_file()


def open_edge_model(
    model: SplitSystem | str | Path,
    runtime: str = RUNTIMES[0],
    providers: Sequence[str] = ("cpu",),
    device: str = "auto",
    precision: str | None = None,
) -> EdgeModel:
    """The edge model for `model`: an export folder runs in ONNX Runtime without PyTorch (on
    `providers`); a `SplitSystem`, or a checkpoint's name or folder, runs with the training
    stack (`runtime`; `device` and `precision` for PyTorch)."""
    if is_export(model):
        if runtime != RUNTIMES[0]:
            raise ValueError(f"an export folder runs in {RUNTIMES[0]}, not {runtime}")
        return ExportedEdge(Path(model), providers)
    try:
        from splitcast.edge.runtime import LocalRuntime
        from splitcast.models.checkpoint import load_system
        from splitcast.models.devices import resolve_device, resolve_precision
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"the model {model!s:.60} needs the training stack ({exc}); without it, give "
            "--model an export folder (`splitcast export` on a machine with the full install)"
        ) from None
    system = load_system(str(model)) if isinstance(model, (str, Path)) else model
    where = resolve_device(device)
    return LocalRuntime(
        system,
        runtime=runtime,
        providers=providers,
        device=where,
        precision=resolve_precision(precision, where),
    )
