"""The edge from an export folder (`splitcast export`): ONNX Runtime, numpy and OpenCV only.

What runs is exactly what the folder's `manifest.json` describes: the local model's graph on
every frame; with an answer, feature fusion's fused graph (features times the age's gain) or
the late average's combine graph for the age's record (the forecast blurred and weighted, the
on-time answer moved along the optical flow measured here with OpenCV). Graph files are
checked against their sha256 when the folder is opened, so a copy cut short on its way to a
Jetson is an error naming the file, not wrong outputs. Nothing here imports PyTorch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from splitcast.data.images import fit
from splitcast.edge.connection import ExpectedServer
from splitcast.models.answers import AS_SENT, AnswerUse, WireTensor, use_at
from splitcast.models.codec import Codec, LearnedCodec, get_codec
from splitcast.models.codec_names import COMBINER_NAMES, PROBABILITY_CODEC, STATELESS_CODECS
from splitcast.models.motion import FrameHistory, MotionEstimator, grey
from splitcast.models.providers import open_session, resolve_providers

MANIFEST = "manifest.json"
EXPORT_FORMAT = "splitcast-export"
EXPORT_VERSION = 2  # 2: the manifest carries the answer horizon
FUSION, LATE_AVERAGE = COMBINER_NAMES


class ExportError(ValueError):
    """An export folder this edge cannot run (missing, altered or of another format)."""


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, after checking its format and every graph file's sha256."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not a readable export manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise ExportError(f"{path} is not an export manifest (not a JSON object)")
    if (manifest.get("format"), manifest.get("version")) != (EXPORT_FORMAT, EXPORT_VERSION):
        raise ExportError(
            f"{path} is {manifest.get('format')} version {manifest.get('version')}; this edge "
            f"reads {EXPORT_FORMAT} version {EXPORT_VERSION} (export again with this splitcast)"
        )
    try:
        for name, graph in manifest["graphs"].items():
            file = folder / graph["file"]
            if not file.is_file():
                raise ExportError(f"{file} (graph {name}) is missing from the export folder")
            if hashlib.sha256(file.read_bytes()).hexdigest() != graph["sha256"]:
                raise ExportError(f"{file} differs from the manifest's sha256 (a damaged copy?)")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path} is damaged: its graphs lack {exc}") from None
    return manifest


class _Graph:
    """One graph's session, fed by input name (inputs the exporter dropped are skipped)."""

    def __init__(self, path: Path, providers: Sequence[Any]) -> None:
        self.session: ort.InferenceSession = open_session(path, None, providers)
        self.inputs = {value.name for value in self.session.get_inputs()}

    def __call__(self, **feed: np.ndarray) -> np.ndarray:
        kept = {name: value for name, value in feed.items() if name in self.inputs}
        return self.session.run(None, kept)[0]


class ExportedEdge:
    """An export folder's edge step (`splitcast.edge.model.EdgeModel`) at batch 1."""

    def __init__(self, folder: Path, providers: Sequence[str] = ("cpu",)) -> None:
        manifest = read_manifest(folder)
        chosen = resolve_providers(providers)
        self.folder = folder
        self.combiner: str = manifest["combiner"]
        if self.combiner not in (FUSION, LATE_AVERAGE):
            raise ExportError(f"{folder}: unknown combiner {self.combiner!r}")
        self.local_size: tuple[int, int] = tuple(manifest["local_size"])
        tensors = tuple(
            WireTensor(t["name"], tuple(t["shape"]), t["codec"]) for t in manifest["answer"]
        )
        checkpoint = manifest["checkpoint"]
        self.expected = ExpectedServer(
            checkpoint["config"],
            checkpoint["version"],
            self.combiner,
            tensors,
            self.local_size,
            float(manifest["fps"]),
        )
        self.policy = tuple(
            AnswerUse(r["weight"], r["blur"], r["warped_weight"]) for r in manifest["policy"]
        )

        def graph(name: str) -> _Graph:
            return _Graph(folder / manifest["graphs"][name]["file"], chosen)

        self.local = graph("edge_local")
        self.providers: list[str] = self.local.session.get_providers()
        self.fused = graph("edge_fused") if self.combiner == FUSION else None
        self.combines: dict[AnswerUse, _Graph] = {}
        if self.combiner == LATE_AVERAGE:
            self.combines = {
                use: graph(record["graph"])
                for use, record in zip(self.policy, manifest["policy"], strict=True)
            }
        self.codecs: dict[str, Codec] = {
            name: get_codec(name) for name in (*STATELESS_CODECS, PROBABILITY_CODEC)
        }
        if "learned_codec" in manifest:
            synthesis = graph(manifest["learned_codec"]["graph"])
            self.codecs["learned"] = LearnedCodec(
                np.asarray(manifest["learned_codec"]["tables"]), _one_item(synthesis)
            )
        self.motion = MotionEstimator() if self.combiner == LATE_AVERAGE else None
        self.horizon_ticks = float(manifest["horizon_ticks"])
        self.history = FrameHistory(int(self.horizon_ticks) + 1)
        self._frame: np.ndarray | None = None
        self._local_logits: np.ndarray | None = None

    def use_at(self, age_ticks: float) -> AnswerUse:
        return use_at(self.policy, age_ticks)

    def describe(self) -> str:
        return f"onnxruntime on {', '.join(self.providers)} (export {self.folder})"

    def segment(
        self,
        rgb: np.ndarray,
        answer: dict[str, np.ndarray] | None,
        output_size: tuple[int, int] | None = None,
        use: AnswerUse = AS_SENT,
        sequence: int | None = None,
        source_sequence: int | None = None,
    ) -> np.ndarray:
        """See `splitcast.edge.model.EdgeModel.segment`."""
        fitted = fit(rgb, self.local_size)
        self._frame = fitted.transpose(2, 0, 1)[np.newaxis].astype(np.float32) / np.float32(255)
        self._local_logits = None
        if sequence is not None and self.motion is not None:
            self.history.add(sequence, grey(fitted))
        if answer is None:
            scores = self._local_only()
        elif self.fused is not None:
            gain = np.asarray(use.weight, dtype=np.float32)
            scores = self.fused(frame=self._frame, features=answer["features"], gain=gain)
        else:
            scores = self._late_average(answer, use, sequence, source_sequence)
        return self.ids(scores, output_size)

    def ids(self, scores: np.ndarray, output_size: tuple[int, int] | None) -> np.ndarray:
        """Bilinear resizes (half-pixel centres, as the training stack's) to the local size,
        then to `output_size`, before the argmax (`splitcast.models.edge_step.EdgeStep.ids`)."""
        maps = np.ascontiguousarray(scores[0].transpose(1, 2, 0), dtype=np.float32)
        for height, width in (self.local_size, output_size or self.local_size):
            if maps.shape[:2] != (height, width):
                maps = cv2.resize(maps, (width, height), interpolation=cv2.INTER_LINEAR)
        return maps.reshape(height, width, -1).argmax(axis=2).astype(np.uint8)

    def local_only_ids(self, output_size: tuple[int, int] | None = None) -> np.ndarray:
        assert self._frame is not None, "segment a frame first"
        return self.ids(self._local_only(), output_size)

    def _local_only(self) -> np.ndarray:
        if self._local_logits is None:
            self._local_logits = self.local(frame=self._frame)
        return self._local_logits

    def _late_average(
        self,
        answer: dict[str, np.ndarray],
        use: AnswerUse,
        sequence: int | None,
        source_sequence: int | None,
    ) -> np.ndarray:
        combine = self.combines.get(use)
        if combine is None:
            raise ExportError(f"{self.folder} has no combine graph for {use}")
        flow = self._flow(use, sequence, source_sequence)
        return combine(
            local_logits=self._local_only(),
            forecast=answer["forecast"],
            on_time=answer["on_time"],
            flow=flow,
        )

    def _flow(
        self, use: AnswerUse, sequence: int | None, source_sequence: int | None
    ) -> np.ndarray:
        """Flow [1, H, W, 2] from this frame back to the answer's; zeros (the answer not
        moved) when it is not used or either frame is not in the history."""
        current = None if sequence is None else self.history.get(sequence)
        source = None if source_sequence is None else self.history.get(source_sequence)
        if not use.warped_weight or self.motion is None or current is None or source is None:
            return np.zeros((1, *self.local_size, 2), dtype=np.float32)
        return self.motion.backward_flow(current, source)[np.newaxis]


def _one_item(graph: _Graph) -> Callable[[np.ndarray], np.ndarray]:
    """The synthesis graph as the learned codec's `features_of`: one frame, no batch axis."""

    def features_of(symbols: np.ndarray) -> np.ndarray:
        return graph(symbols=symbols[np.newaxis].astype(np.int64))[0]

    return features_of
