"""Offline evaluation: mIoU versus delay for Dedelayed and every baseline, over a whole split.

For each target frame t (the same targets for every delay, so the columns compare) and true
delay d ticks at stride s, with the remote context ending at t - d*s:
- `local_only`: the local model on frame t, no downlink;
- `remote_stale_image`: the remote model on frame t - d*s alone (image-only), used at t;
- `remote_stale_video`: the remote model on the K-frame context, told the delay is 0;
- `remote_predictive`: the remote model's logits conditioned on the true delay;
- `dedelayed`: the local model on frame t fused with the remote downlink for that delay;
- `oracle`: the remote image-only model on frame t itself (what a zero-delay link gives).

Remote frames pass through the uplink codec (the configuration's format and quality) first,
as in live use. Logits are scored at label resolution.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from splitcast.data.clips import Clip, ClipDataset, DataError
from splitcast.data.images import fit
from splitcast.data.metrics import ConfusionMatrix
from splitcast.data.sampling import context_indices, valid_targets
from splitcast.models.cache import uplink_round_trip
from splitcast.models.layers import resize
from splitcast.models.registry import SplitSystem

METHODS = (
    "local_only",
    "remote_stale_image",
    "remote_stale_video",
    "remote_predictive",
    "dedelayed",
    "oracle",
)


@dataclass(frozen=True)
class ScheduledFrame:
    """What the live edge did at one frame: fused features computed from `context` (frame
    indices, oldest first) conditioned on `delay`, or ran local-only (`context` None)."""

    context: list[int] | None
    delay: float | None


@dataclass
class _ClipState:
    """Per-clip tensors computed once and shared by every delay."""

    encodings: dict[int, torch.Tensor]
    image_only: dict[int, torch.Tensor]


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class OfflineEvaluator:
    """Scores a system on a clip dataset; holds the confusion matrices."""

    def __init__(
        self,
        system: SplitSystem,
        dataset: ClipDataset,
        local_size: tuple[int, int] | None = None,
        batch_size: int = 8,
    ) -> None:
        self.system = system.eval()
        self.config = system.config
        self.dataset = dataset
        self.local_size = local_size or self.config.local_size
        self.batch_size = batch_size
        if dataset.meta.num_classes != self.config.num_classes:
            raise DataError(
                f"the data has {dataset.meta.num_classes} classes, "
                f"the model {self.config.num_classes}"
            )

    def _matrix(self) -> ConfusionMatrix:
        meta = self.dataset.meta
        return ConfusionMatrix(meta.num_classes, meta.ignore_index, meta.classes)

    def targets(self, clip: Clip, max_delay: float, stride: int, every: int) -> list[int]:
        return valid_targets(clip, max_delay, self.config.context_frames, stride)[::every]

    @torch.inference_mode()
    def _state(self, clip: Clip, indices: set[int]) -> _ClipState:
        remote = self.system.remote
        config = self.config
        encodings: dict[int, torch.Tensor] = {}
        ordered = sorted(indices)
        for chunk in _chunks(ordered, self.batch_size):
            frames = [
                uplink_round_trip(
                    clip.frame(i), config.remote_size, config.uplink_format, config.uplink_quality
                )
                for i in chunk
            ]
            encoded = remote.encode(torch.stack([_to_tensor(f) for f in frames]))
            encodings.update(zip(chunk, encoded, strict=True))
        image_only = {}
        for chunk in _chunks(ordered, self.batch_size):
            logits = remote.image_only_from_encoding(
                torch.stack([encodings[i] for i in chunk]), self.local_size
            )
            image_only.update(zip(chunk, logits, strict=True))
        return _ClipState(encodings, image_only)

    @torch.inference_mode()
    def run(
        self,
        delays: Sequence[float],
        stride: int = 1,
        every: int = 1,
        mismatch: Sequence[float] | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """mIoU per method per delay (and the D_o x D_i matrix when `mismatch` lists delays)."""
        max_delay = max([*delays, *(mismatch or [])])
        matrices = {m: [self._matrix() for _ in delays] for m in METHODS}
        grid = [[self._matrix() for _ in mismatch] for _ in mismatch] if mismatch else None
        count = 0
        system, k = self.system, self.config.context_frames
        for clip in tqdm(
            self.dataset.clips, desc=f"evaluate s={stride}", unit="clip", disable=not progress
        ):
            targets = self.targets(clip, max_delay, stride, every)
            if not targets:
                continue
            count += len(targets)
            needed = set(targets)
            for t in targets:
                for d in {*delays, *(mismatch or [])}:
                    needed.update(context_indices(t, d, k, stride))
            state = self._state(clip, needed)
            for chunk in _chunks(targets, self.batch_size):
                labels = torch.from_numpy(np.stack([clip.label(t) for t in chunk])).long()

                def score(
                    matrix: ConfusionMatrix, logits: torch.Tensor, labels: torch.Tensor = labels
                ) -> None:
                    matrix.update(resize(logits, tuple(labels.shape[-2:])).argmax(1), labels)

                local_frames = torch.stack(
                    [_to_tensor(fit(clip.frame(t), self.local_size)) for t in chunk]
                )
                features = system.local.encode(local_frames)
                local_only = system.local.decode(features, None, self.local_size)
                oracle = torch.stack([state.image_only[t] for t in chunk])
                for column, d in enumerate(delays):
                    context = self._context(state, chunk, d, stride)
                    delay = torch.full((len(chunk),), float(d))
                    downlink, predictive = system.remote.predict(context, delay, self.local_size)
                    _, stale_video = system.remote.predict(
                        context, torch.zeros_like(delay), self.local_size
                    )
                    newest = [context_indices(t, d, k, stride)[-1] for t in chunk]
                    score(matrices["local_only"][column], local_only)
                    score(matrices["oracle"][column], oracle)
                    score(
                        matrices["remote_stale_image"][column],
                        torch.stack([state.image_only[i] for i in newest]),
                    )
                    score(matrices["remote_stale_video"][column], stale_video)
                    score(matrices["remote_predictive"][column], predictive)
                    score(
                        matrices["dedelayed"][column],
                        system.local.decode(features, downlink, self.local_size),
                    )
                if grid is not None and mismatch is not None:
                    for row, true_delay in enumerate(mismatch):
                        context = self._context(state, chunk, true_delay, stride)
                        for column, assumed in enumerate(mismatch):
                            downlink, _ = system.remote.predict(
                                context, torch.full((len(chunk),), float(assumed)), self.local_size
                            )
                            score(
                                grid[row][column],
                                system.local.decode(features, downlink, self.local_size),
                            )
        if count == 0:
            raise DataError(
                f"no clip has a labelled frame far enough in for delay {max_delay:g} "
                f"at stride {stride}"
            )
        result: dict[str, Any] = {
            "targets": count,
            "miou": {m: [round(x.miou(), 2) for x in matrices[m]] for m in METHODS},
            "per_class_iou": {
                m: [{k: round(v, 2) for k, v in x.per_class().items()} for x in matrices[m]]
                for m in METHODS
            },
        }
        if grid is not None:
            result["mismatch"] = [[round(cell.miou(), 2) for cell in row] for row in grid]
        return result

    @torch.inference_mode()
    def run_schedule(
        self, schedule: dict[str, dict[int, ScheduledFrame]], progress: bool = True
    ) -> float:
        """mIoU of replaying the live edge's decisions offline, frame by frame."""
        matrix = self._matrix()
        system = self.system
        clips = [clip for clip in self.dataset.clips if schedule.get(clip.name)]
        for clip in tqdm(clips, desc="offline replay", unit="clip", disable=not progress):
            plan = schedule[clip.name]
            needed = {i for frame in plan.values() if frame.context for i in frame.context}
            state = self._state(clip, needed)
            for t, frame in sorted(plan.items()):
                local = _to_tensor(fit(clip.frame(t), self.local_size)).unsqueeze(0)
                downlink = None
                if frame.context is not None:
                    context = torch.stack(
                        [state.encodings[i] for i in frame.context], dim=1
                    ).unsqueeze(0)
                    downlink, _ = system.remote.predict(
                        context, torch.tensor([float(frame.delay)]), self.local_size
                    )
                logits = system.local(local, downlink)
                label = torch.from_numpy(clip.label(t)).long().unsqueeze(0)
                matrix.update(resize(logits, tuple(label.shape[-2:])).argmax(1), label)
        return round(matrix.miou(), 2)

    def _context(
        self, state: _ClipState, chunk: Sequence[int], delay: float, stride: int
    ) -> torch.Tensor:
        k = self.config.context_frames
        return torch.stack(
            [
                torch.stack(
                    [state.encodings[i] for i in context_indices(t, delay, k, stride)], dim=1
                )
                for t in chunk
            ]
        )
