"""Offline evaluation: mIoU versus delay for Dedelayed and every baseline, over a whole split.

For each target frame t (the same targets for every delay, so the columns compare) and true
delay d ticks at stride s, with the remote context ending at t - d*s:
- `local_only`: the local model on frame t, no downlink;
- `remote_stale_image`: the remote model on frame t - d*s alone (image-only), used at t;
- `remote_stale_video`: the remote model on the K-frame context, told the delay is 0;
- `remote_predictive`: the remote model's logits conditioned on the true delay;
- `dedelayed`: the edge's output on frame t with the remote downlink for that delay (fused
  features, or the late average: see `splitcast.models.downlink`);
- `oracle`: the remote image-only model on frame t itself (what a zero-delay link gives).

Remote frames pass through the uplink codec (the configuration's format and quality) first,
and downlink features through the downlink codec (encoded to bytes and decoded), as in live
use; the evaluator counts the bytes of both. Logits are scored at label resolution.
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
from splitcast.models.codec import Codec
from splitcast.models.downlink import (
    AnswerUse,
    downlink_use,
    edge_scores,
    is_late_average,
    remote_downlink,
    remote_outputs,
)
from splitcast.models.layers import class_ids
from splitcast.models.local import Features
from splitcast.models.motion import MotionEstimator, grey
from splitcast.models.registry import SplitSystem, max_context_gap
from splitcast.models.remote import context_delay

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
    indices, oldest first) conditioned on `delay`, or ran local-only (`context` None).
    `latest_source` is the newest frame the server had answered for by then (fused or not),
    which is what a remote-only system would be showing."""

    context: list[int] | None
    delay: float | None
    latest_source: int | None = None
    output: np.ndarray | None = None
    """The edge's class ids at the label size, to check the replay against."""


@dataclass
class _ClipState:
    """Per-clip results computed once and shared by every delay: frame encodings, and class
    ids at label resolution of the remote image-only model per frame and of the delay-unaware
    video model per context (both depend only on which frames the remote saw)."""

    encodings: dict[int, torch.Tensor]
    image_only_ids: dict[int, torch.Tensor]
    stale_video_ids: dict[tuple[int, ...], torch.Tensor]


class _EdgeMotion:
    """The flow a live edge measures from each target frame back to an answer's frame (late
    average only: `splitcast.models.motion`), on the same grey local-size images."""

    def __init__(self, clip: Clip, local_size: tuple[int, int]) -> None:
        self.clip = clip
        self.local_size = local_size
        self.estimator = MotionEstimator()
        self.greys: dict[int, np.ndarray] = {}

    def _grey(self, index: int) -> np.ndarray:
        if index not in self.greys:
            self.greys[index] = grey(fit(self.clip.frame(index), self.local_size))
        return self.greys[index]

    def flows(self, targets: Sequence[int], sources: Sequence[int]) -> torch.Tensor:
        """Flows [B, H, W, 2] from each target frame to its source frame."""
        return torch.stack(
            [
                self.estimator.backward_flow(self._grey(t), self._grey(s))
                for t, s in zip(targets, sources, strict=True)
            ]
        )


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
        codec: Codec | None = None,
    ) -> None:
        """`codec`: the downlink codec every fused feature map passes through (None: the
        features as computed, no wire)."""
        self.system = system.eval()
        self.codec = codec
        self.downlink_bytes: list[int] = []
        self.uplink_bytes: list[int] = []
        self.variant_bytes: dict[str, list[int]] = {}
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
    def _state(
        self,
        clip: Clip,
        frames: set[int],
        image_only: set[int] = frozenset(),
        contexts: set[tuple[int, ...]] = frozenset(),
    ) -> _ClipState:
        """Encode `frames`; class ids of the image-only model on `image_only` frames and of
        the delay-0 video model on `contexts`."""
        remote = self.system.remote
        config = self.config
        label_size = tuple(clip.label(clip.labelled[0]).shape) if clip.labelled else None
        encodings: dict[int, torch.Tensor] = {}
        for chunk in _chunks(
            sorted(frames | image_only | {i for c in contexts for i in c}), self.batch_size
        ):
            coded = [
                uplink_round_trip(
                    clip.frame(i), config.remote_size, config.uplink_format, config.uplink_quality
                )
                for i in chunk
            ]
            self.uplink_bytes.extend(size for _, size in coded)
            encoded = remote.encode(torch.stack([_to_tensor(rgb) for rgb, _ in coded]))
            encodings.update(zip(chunk, encoded, strict=True))
        image_only_ids: dict[int, torch.Tensor] = {}
        for chunk in _chunks(sorted(image_only), self.batch_size):
            logits = remote.image_only_from_encoding(
                torch.stack([encodings[i] for i in chunk]), self.local_size
            )
            image_only_ids.update(zip(chunk, class_ids(logits, label_size), strict=True))
        stale_video_ids: dict[tuple[int, ...], torch.Tensor] = {}
        for chunk in _chunks(sorted(contexts), self.batch_size):
            stacked = torch.stack([torch.stack([encodings[i] for i in c], dim=1) for c in chunk])
            logits = remote.predict(stacked, torch.zeros(len(chunk)), self.local_size)[1]
            stale_video_ids.update(zip(chunk, class_ids(logits, label_size), strict=True))
        return _ClipState(encodings, image_only_ids, stale_video_ids)

    @torch.inference_mode()
    def run(
        self,
        delays: Sequence[float],
        stride: int = 1,
        every: int = 1,
        mismatch: Sequence[float] | None = None,
        progress: bool = True,
        variants: dict[str, Codec] | None = None,
        gains: Sequence[AnswerUse] | None = None,
    ) -> dict[str, Any]:
        """mIoU per method per delay (and the D_o x D_i matrix when `mismatch` lists delays).

        Dedelayed uses the downlink as the configuration says for its age (the true delay; see
        `downlink_use`: the feature gain, or the late-average weight and blur); with `gains`,
        it is also scored with each of those uses instead (`gain_grid` in the result: one row
        per delay, one column per candidate).

        Methods that do not depend on the delay (local_only, oracle) are scored once per target
        and reported in every column; that is exact because every column has the same targets.
        `variants` are further downlink codecs: Dedelayed is also scored with each of them on
        the same features (`variants` in the result; their byte sizes in `variant_bytes`).
        """
        variants = variants or {}
        self.variant_bytes = {name: [] for name in variants}
        variant_matrices = {name: [self._matrix() for _ in delays] for name in variants}
        max_delay = max([*delays, *(mismatch or [])])
        per_delay = ("remote_stale_image", "remote_stale_video", "remote_predictive", "dedelayed")
        matrices = {m: [self._matrix() for _ in delays] for m in per_delay}
        fixed = {"local_only": self._matrix(), "oracle": self._matrix()}
        grid = [[self._matrix() for _ in mismatch] for _ in mismatch] if mismatch else None
        gain_grid = [[self._matrix() for _ in gains or ()] for _ in delays]
        count = 0
        system, k = self.system, self.config.context_frames
        for clip in tqdm(
            self.dataset.clips, desc=f"evaluate s={stride}", unit="clip", disable=not progress
        ):
            targets = self.targets(clip, max_delay, stride, every)
            if not targets:
                continue
            count += len(targets)
            contexts = {
                (t, d): context_indices(t, d, k, stride)
                for t in targets
                for d in {*delays, *(mismatch or [])}
            }
            state = self._state(
                clip,
                {i for c in contexts.values() for i in c},
                image_only=set(targets) | {c[-1] for c in contexts.values()},
                contexts={tuple(contexts[t, d]) for t in targets for d in delays},
            )
            motion = self._motion(clip)
            for chunk in _chunks(targets, self.batch_size):
                labels = torch.from_numpy(np.stack([clip.label(t) for t in chunk])).long()
                size = tuple(labels.shape[-2:])
                local_frames = torch.stack(
                    [_to_tensor(fit(clip.frame(t), self.local_size)) for t in chunk]
                )
                features = system.local.encode(local_frames)
                local_only = system.local.decode(features, None, self.local_size)
                local_ids = class_ids(local_only, size)
                fixed["local_only"].update(local_ids, labels)
                fixed["oracle"].update(
                    torch.stack([state.image_only_ids[t] for t in chunk]), labels
                )
                for column, d in enumerate(delays):
                    used = [contexts[t, d] for t in chunk]
                    context = self._stack(state, used)
                    delay = torch.full((len(chunk),), float(d))
                    use = downlink_use(self.config, d)
                    flows = None if motion is None else motion.flows(chunk, [c[-1] for c in used])
                    downlink, predictive = remote_outputs(system, context, delay, self.local_size)
                    for name, codec in variants.items():
                        sent = self._transmit(downlink, codec, self.variant_bytes[name])
                        scores = self._edge(features, local_only, sent, use, flows)
                        variant_matrices[name][column].update(class_ids(scores, size), labels)
                    downlink = self._transmit(downlink, self.codec, self.downlink_bytes)
                    matrices["remote_stale_image"][column].update(
                        torch.stack([state.image_only_ids[c[-1]] for c in used]), labels
                    )
                    matrices["remote_stale_video"][column].update(
                        torch.stack([state.stale_video_ids[tuple(c)] for c in used]), labels
                    )
                    matrices["remote_predictive"][column].update(
                        class_ids(predictive, size), labels
                    )
                    scores = self._edge(features, local_only, downlink, use, flows)
                    fused_ids = class_ids(scores, size)
                    matrices["dedelayed"][column].update(fused_ids, labels)
                    for cell, candidate in zip(gain_grid[column], gains or (), strict=True):
                        if candidate == use:
                            ids = fused_ids
                        else:
                            scores = self._edge(features, local_only, downlink, candidate, flows)
                            ids = class_ids(scores, size)
                        cell.update(ids, labels)
                if grid is not None and mismatch is not None:
                    for row, true_delay in enumerate(mismatch):
                        used = [contexts[t, true_delay] for t in chunk]
                        context = self._stack(state, used)
                        use = downlink_use(self.config, true_delay)
                        flows = (
                            None if motion is None else motion.flows(chunk, [c[-1] for c in used])
                        )
                        for column, assumed in enumerate(mismatch):
                            downlink = remote_downlink(
                                system,
                                context,
                                torch.full((len(chunk),), float(assumed)),
                                self.local_size,
                            )
                            downlink = self._transmit(downlink, self.codec)
                            scores = self._edge(features, local_only, downlink, use, flows)
                            grid[row][column].update(class_ids(scores, size), labels)
        if count == 0:
            raise DataError(
                f"no clip has a labelled frame far enough in for delay {max_delay:g} "
                f"at stride {stride}"
            )
        columns = {m: [fixed[m]] * len(delays) for m in fixed} | matrices
        result: dict[str, Any] = {
            "targets": count,
            "miou": {m: [round(x.miou(), 2) for x in columns[m]] for m in METHODS},
            "per_class_iou": {
                m: [{k: round(v, 2) for k, v in x.per_class().items()} for x in columns[m]]
                for m in METHODS
            },
        }
        if variants:
            result["variants"] = {
                name: [round(x.miou(), 2) for x in columns]
                for name, columns in variant_matrices.items()
            }
        if gains:
            result["gain_grid"] = [[round(cell.miou(), 2) for cell in row] for row in gain_grid]
        if grid is not None:
            result["mismatch"] = [[round(cell.miou(), 2) for cell in row] for row in grid]
        return result

    @torch.inference_mode()
    def run_schedule(
        self, schedule: dict[str, dict[int, ScheduledFrame]], progress: bool = True
    ) -> dict[str, float | None]:
        """Replay a live run's decisions offline, frame by frame: `dedelayed` (the same fusion
        decisions), `local_only` (same frames, never fused) and `remote_stale` (the remote
        image-only answer for `latest_source`; the local output until the first answer).
        `replay_agreement` is the fraction of pixels where the replayed `dedelayed` output
        equals the edge's `output` (None if no frame has one)."""
        matrices = {name: self._matrix() for name in ("dedelayed", "local_only", "remote_stale")}
        agreeing = compared = 0
        system = self.system
        clips = [clip for clip in self.dataset.clips if schedule.get(clip.name)]
        max_gap = max_context_gap(system.config)
        ticks_per_frame = system.config.fps / self.dataset.meta.fps
        for clip in tqdm(clips, desc="offline replay", unit="clip", disable=not progress):
            plan = schedule[clip.name]
            needed = {i for frame in plan.values() if frame.context for i in frame.context}
            sources = {f.latest_source for f in plan.values() if f.latest_source is not None}
            state = self._state(clip, needed, image_only=sources)
            motion = self._motion(clip)
            for t, frame in sorted(plan.items()):
                label = torch.from_numpy(clip.label(t)).long().unsqueeze(0)
                size = tuple(label.shape[-2:])
                pixels = _to_tensor(fit(clip.frame(t), self.local_size)).unsqueeze(0)
                features = system.local.encode(pixels)
                local = system.local.decode(features, None, self.local_size)
                local_ids = class_ids(local, size)
                matrices["local_only"].update(local_ids, label)
                fused_ids = local_ids
                if frame.context is not None:
                    context = self._stack(state, [frame.context])
                    delay = context_delay(float(frame.delay), frame.context, max_gap)
                    downlink = remote_downlink(
                        system, context, torch.tensor([delay]), self.local_size
                    )
                    age = (t - frame.context[-1]) * ticks_per_frame
                    use = downlink_use(system.config, age)
                    flows = None if motion is None else motion.flows([t], frame.context[-1:])
                    downlink = self._transmit(downlink, self.codec)
                    scores = self._edge(features, local, downlink, use, flows)
                    fused_ids = class_ids(scores, size)
                matrices["dedelayed"].update(fused_ids, label)
                if frame.output is not None:
                    agreeing += int((fused_ids[0].numpy() == frame.output).sum())
                    compared += frame.output.size
                stale_ids = (
                    local_ids
                    if frame.latest_source is None
                    else state.image_only_ids[frame.latest_source].unsqueeze(0)
                )
                matrices["remote_stale"].update(stale_ids, label)
        scores: dict[str, float | None] = {
            name: round(matrix.miou(), 2) for name, matrix in matrices.items()
        }
        scores["replay_agreement"] = round(agreeing / compared, 5) if compared else None
        return scores

    def _motion(self, clip: Clip) -> _EdgeMotion | None:
        """What measures the edge's flows in `clip`, if this configuration uses them."""
        return _EdgeMotion(clip, self.local_size) if is_late_average(self.config) else None

    def _edge(
        self,
        features: Features,
        local_only: torch.Tensor,
        received: torch.Tensor,
        use: AnswerUse,
        flows: torch.Tensor | None,
    ) -> torch.Tensor:
        """The edge's scores with `received` (after the codec) used as `use`."""
        return edge_scores(self.system, features, local_only, received, use, self.local_size, flows)

    @staticmethod
    def _transmit(
        downlink: torch.Tensor, codec: Codec | None, sizes: list[int] | None = None
    ) -> torch.Tensor:
        """Each item's features after encoding to bytes and decoding (their byte sizes are
        appended to `sizes`); unchanged without a codec."""
        if codec is None:
            return downlink
        decoded = []
        for item in downlink.numpy():
            encoded = codec.encode(item)
            if sizes is not None:
                sizes.append(len(encoded.payload))
            decoded.append(torch.from_numpy(codec.decode(encoded)))
        return torch.stack(decoded)

    @staticmethod
    def _stack(state: _ClipState, contexts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Encodings [B, C, K, h, w] of each context's frames, oldest first."""
        return torch.stack([torch.stack([state.encodings[i] for i in c], dim=1) for c in contexts])
