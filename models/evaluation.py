"""Offline evaluation: mIoU versus delay for Dedelayed and every baseline, over a whole split.

For each target frame t (the same targets for every delay, so the columns compare) and true
delay d ticks at stride s, with the remote context ending at t - d*s:
- `local_only`: the local model on frame t, no downlink;
- `remote_stale_image`: the remote model on frame t - d*s alone (image-only), used at t;
- `remote_stale_video`: the remote model on the K-frame context, told the delay is 0;
- `remote_predictive`: the remote model's logits conditioned on the true delay;
- `dedelayed`: the edge's output on frame t with the remote's answer for that delay, combined
  by the configuration's combiner (`splitcast.models.combiners`) through the same edge step
  a live edge runs (`splitcast.models.edge_step`);
- `oracle`: the remote image-only model on frame t itself (what a zero-delay link gives).

Remote frames pass through the uplink codec (the configuration's format and quality) first,
and answers through the downlink codec (encoded to bytes and decoded), as in live use; the
evaluator counts the bytes of both. Logits are scored at label resolution. The networks run
on the evaluator's device in its precision; codecs, motion and scoring run on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from splitcast.data.clips import Clip, ClipDataset, DataError
from splitcast.data.metrics import ConfusionMatrix
from splitcast.data.sampling import context_indices, valid_targets
from splitcast.models.answers import AnswerUse
from splitcast.models.cache import uplink_round_trip
from splitcast.models.codec import Codec
from splitcast.models.combiners import AnswerTensors, LocalPass
from splitcast.models.devices import CPU, autocast
from splitcast.models.edge_step import ClipGreys, EdgeStep, LocalRunner, TorchLocal, to_tensor
from splitcast.models.layers import class_ids
from splitcast.models.offline_wire import through_wire
from splitcast.models.registry import SplitSystem
from splitcast.models.remote_stream import window
from splitcast.models.score_tables import Matrices, miou_results
from splitcast.signals import signal_name


@dataclass(frozen=True)
class ScheduledFrame:
    """What the live edge did at one frame: combined the answer computed from `context` (frame
    indices, oldest first) conditioned on `delay`, or ran local-only (`context` None).
    `latest_source` is the newest frame the server had answered for by then (used or not),
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


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Chunk:
    """One batch of target frames of a clip, with what every delay column shares."""

    targets: Sequence[int]
    labels: torch.Tensor
    local: LocalPass
    greys: ClipGreys

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.labels.shape[-2:])


class OfflineEvaluator:
    """Scores a system on a clip dataset; holds the confusion matrices."""

    def __init__(
        self,
        system: SplitSystem,
        dataset: ClipDataset,
        local_size: tuple[int, int] | None = None,
        batch_size: int = 8,
        codec: Codec | None = None,
        local: LocalRunner | None = None,
        device: torch.device = CPU,
        precision: str = "fp32",
    ) -> None:
        """`local_size`: run the local model at another input size than the configuration's;
        `codec`: the downlink codec every answer passes through (None: the answers as
        computed, no wire); `local`: what runs the local model (default: PyTorch, batched,
        on `device`; a live edge's runner scores exactly what that edge outputs); `device`
        and `precision` (`splitcast.models.devices`): where the networks run."""
        if local_size is not None:
            system = replace(system, config=replace(system.config, local_size=tuple(local_size)))
        self.system = system.eval()
        self.config = system.config
        self.combiner = system.combiner()
        self.device = device
        self.precision = precision
        system.remote.to(device)
        local = local or TorchLocal(system.local.to(device), precision=precision)
        self.edge = EdgeStep(self.combiner, local, self.config.local_size)
        self.codec = codec
        self.downlink_bytes: list[int] = []
        self.uplink_bytes: list[int] = []
        self.variant_bytes: dict[str, list[int]] = {}
        self.matrices: Matrices | None = None
        self.clip_matrices: dict[str, Matrices] = {}
        self.stopped_by: str | None = None
        """SIGINT or SIGTERM when the last `run` was stopped (its results: `clip_matrices`)."""
        self.dataset = dataset
        self.local_size = self.config.local_size
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
    def clip_state(
        self,
        clip: Clip,
        frames: set[int],
        image_only: set[int] = frozenset(),
        contexts: set[tuple[int, ...]] = frozenset(),
    ) -> _ClipState:
        """The remote's encodings of `frames` (after the uplink codec); class ids of the
        image-only model on `image_only` frames and of the delay-0 video model on `contexts`."""
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
            frames = torch.stack([to_tensor(rgb) for rgb, _ in coded]).to(self.device)
            with self._autocast():
                encodings.update(zip(chunk, remote.encode(frames), strict=True))
        image_only_ids: dict[int, torch.Tensor] = {}
        for chunk in _chunks(sorted(image_only), self.batch_size):
            with self._autocast():
                logits = remote.image_only_from_encoding(torch.stack([encodings[i] for i in chunk]))
            image_only_ids.update(zip(chunk, class_ids(logits, label_size), strict=True))
        stale_video_ids: dict[tuple[int, ...], torch.Tensor] = {}
        for chunk in _chunks(sorted(contexts), self.batch_size):
            zero = torch.zeros(len(chunk), device=self.device)
            with self._autocast():
                logits = remote.outputs(window(encodings, chunk), zero, None, ("logits",))
            stale_video_ids.update(zip(chunk, class_ids(logits["logits"], label_size), strict=True))
        return _ClipState(encodings, image_only_ids, stale_video_ids)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

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

        Dedelayed uses each answer as the combiner's policy says for its age (the true delay);
        with `gains`, it is also scored with each of those uses instead (`gain_grid` in the
        result: one row per delay, one column per candidate).

        Methods that do not depend on the delay (local_only, oracle) are scored once per target
        and reported in every column; that is exact because every column has the same targets.
        `variants` are further downlink codecs: Dedelayed is also scored with each of them on
        the same answers (`variants` in the result; their byte sizes in `variant_bytes`).
        The confusion matrices stay behind, unrounded: `matrices` (the split) and
        `clip_matrices` (per clip name, for confidence intervals over clips).
        """
        variants = variants or {}
        self.variant_bytes = {name: [] for name in variants}

        empty = partial(
            Matrices.empty,
            self._matrix,
            len(delays),
            len(gains or ()),
            variants,
            len(mismatch or ()),
        )
        matrices = empty()
        self.clip_matrices = {}
        max_delay = max([*delays, *(mismatch or [])])
        count = 0
        clips = tqdm(self.dataset.clips, f"evaluate s={stride}", unit="clip", disable=not progress)
        try:
            for clip in clips:
                targets = self.targets(clip, max_delay, stride, every)
                if targets:
                    scored = empty()
                    self._score_clip(
                        clip, targets, stride, delays, mismatch or [], variants, gains or [], scored
                    )
                    matrices.add(scored)
                    self.clip_matrices[clip.name] = scored
                    count += len(targets)
        except KeyboardInterrupt as interrupt:  # keep the clips scored so far, if any
            if count == 0:
                raise
            self.stopped_by = signal_name(interrupt)
        finally:
            clips.close()
        if count == 0:
            raise DataError(
                f"no clip has a labelled frame far enough in for delay {max_delay:g} "
                f"at stride {stride}"
            )
        self.matrices = matrices
        return miou_results(count, len(delays), matrices, mismatch)

    def _score_clip(
        self,
        clip: Clip,
        targets: list[int],
        stride: int,
        delays: Sequence[float],
        mismatch: Sequence[float],
        variants: dict[str, Codec],
        gains: Sequence[AnswerUse],
        matrices: Matrices,
    ) -> None:
        k = self.config.context_frames
        contexts = {
            (t, d): context_indices(t, d, k, stride) for t in targets for d in {*delays, *mismatch}
        }
        state = self.clip_state(
            clip,
            {i for c in contexts.values() for i in c},
            image_only=set(targets) | {c[-1] for c in contexts.values()},
            contexts={tuple(contexts[t, d]) for t in targets for d in delays},
        )
        greys = ClipGreys(clip.frame, self.local_size)
        for targets_chunk in _chunks(targets, self.batch_size):
            labels = torch.from_numpy(np.stack([clip.label(t) for t in targets_chunk])).long()
            _, local = self.edge.prepare([clip.frame(t) for t in targets_chunk])
            chunk = _Chunk(targets_chunk, labels, local, greys)
            local_ids = self.edge.ids(local.local_only(), chunk.size)
            matrices.fixed["local_only"].update(local_ids, labels)
            oracle = torch.stack([state.image_only_ids[t] for t in targets_chunk])
            matrices.fixed["oracle"].update(oracle, labels)
            for column, d in enumerate(delays):
                used = [contexts[t, d] for t in targets_chunk]
                self._score_delay(chunk, state, used, d, column, variants, gains, matrices)
            for row, true_delay in enumerate(mismatch):
                used = [contexts[t, true_delay] for t in targets_chunk]
                for column, assumed in enumerate(mismatch):
                    answer = self._answer(state, used, assumed)[0]
                    answer = through_wire(answer, self.codec)
                    ids = self._edge_ids(chunk, answer, self.combiner.use_at(true_delay), used)
                    matrices.mismatch[row][column].update(ids, labels)

    def _score_delay(
        self,
        chunk: _Chunk,
        state: _ClipState,
        used: list[list[int]],
        d: float,
        column: int,
        variants: dict[str, Codec],
        gains: Sequence[AnswerUse],
        matrices: Matrices,
    ) -> None:
        """Every per-delay method at true delay `d` for one chunk of targets."""
        labels = chunk.labels
        use = self.combiner.use_at(d)
        answer, outputs = self._answer(state, used, d, ("logits",))
        for name, codec in variants.items():
            sent = through_wire(answer, codec, self.variant_bytes[name])
            matrices.variants[name][column].update(self._edge_ids(chunk, sent, use, used), labels)
        answer = through_wire(answer, self.codec, self.downlink_bytes)
        stale_image = torch.stack([state.image_only_ids[c[-1]] for c in used])
        stale_video = torch.stack([state.stale_video_ids[tuple(c)] for c in used])
        matrices.per_delay["remote_stale_image"][column].update(stale_image, labels)
        matrices.per_delay["remote_stale_video"][column].update(stale_video, labels)
        predictive_ids = class_ids(outputs["logits"], chunk.size)
        matrices.per_delay["remote_predictive"][column].update(predictive_ids, labels)
        ids = self._edge_ids(chunk, answer, use, used)
        matrices.per_delay["dedelayed"][column].update(ids, labels)
        for cell, candidate in zip(matrices.gain_grid[column], gains, strict=True):
            cell.update(
                ids if candidate == use else self._edge_ids(chunk, answer, candidate, used), labels
            )

    def _answer(
        self,
        state: _ClipState,
        used: Sequence[Sequence[int]],
        delay: float,
        also: tuple[str, ...] = (),
    ) -> tuple[AnswerTensors, dict[str, torch.Tensor]]:
        """The combiner's answers for contexts `used` told `delay`, and the remote outputs
        named in `also` from the same pass."""
        delays = torch.full((len(used),), float(delay), device=self.device)
        with self._autocast():
            answer, outputs = self.combiner.answer(window(state.encodings, used), delays, also)
        return {name: tensor.float() for name, tensor in answer.items()}, outputs

    def _edge_ids(
        self, chunk: _Chunk, answer: AnswerTensors, use: AnswerUse, used: Sequence[Sequence[int]]
    ) -> torch.Tensor:
        scores = self.edge.scores(
            chunk.local, answer, use, chunk.greys, chunk.targets, [c[-1] for c in used]
        )
        return self.edge.ids(scores, chunk.size)

    @torch.inference_mode()
    def run_schedule(
        self, schedule: dict[str, dict[int, ScheduledFrame]], progress: bool = True
    ) -> dict[str, float | None]:
        """Replay a live run's decisions offline, frame by frame: `dedelayed` (the same answer
        decisions), `local_only` (same frames, never an answer; per clip in `replay_local_only`)
        and `remote_stale` (the remote image-only answer for `latest_source`; the local output
        until the first answer). `replay_agreement`: the fraction of pixels where the replayed
        `dedelayed` output equals the edge's `output` (None if no frame has one)."""
        matrices = {name: self._matrix() for name in ("dedelayed", "remote_stale")}
        self.replay_local_only: dict[str, ConfusionMatrix] = {}
        agreeing = compared = 0
        clips = [clip for clip in self.dataset.clips if schedule.get(clip.name)]
        ticks_per_frame = self.config.fps / self.dataset.meta.fps
        for clip in tqdm(clips, desc="offline replay", unit="clip", disable=not progress):
            plan = schedule[clip.name]
            needed = {i for frame in plan.values() if frame.context for i in frame.context}
            sources = {f.latest_source for f in plan.values() if f.latest_source is not None}
            state = self.clip_state(clip, needed, image_only=sources)
            greys = ClipGreys(clip.frame, self.local_size)
            local_only = self.replay_local_only[clip.name] = self._matrix()
            for t, frame in sorted(plan.items()):
                label = torch.from_numpy(clip.label(t)).long().unsqueeze(0)
                chunk = _Chunk([t], label, self.edge.prepare([clip.frame(t)])[1], greys)
                local_ids = self.edge.ids(chunk.local.local_only(), chunk.size)
                local_only.update(local_ids, label)
                replayed = local_ids
                if frame.context is not None:
                    answer = self.remote_answer(state, frame.context, frame.delay)
                    use = self.combiner.use_at((t - frame.context[-1]) * ticks_per_frame)
                    replayed = self._edge_ids(chunk, answer, use, [frame.context])
                matrices["dedelayed"].update(replayed, label)
                if frame.output is not None:
                    agreeing += int((replayed[0].numpy() == frame.output).sum())
                    compared += frame.output.size
                stale = frame.latest_source
                stale_ids = local_ids if stale is None else state.image_only_ids[stale].unsqueeze(0)
                matrices["remote_stale"].update(stale_ids, label)
        matrices["local_only"] = self._matrix()
        for local_only in self.replay_local_only.values():
            matrices["local_only"].merge(local_only)
        scores: dict[str, float | None] = {n: round(m.miou(), 2) for n, m in matrices.items()}
        scores["replay_agreement"] = round(agreeing / compared, 5) if compared else None
        return scores

    @torch.inference_mode()
    def remote_answer(
        self, state: _ClipState, context: Sequence[int], delay: float
    ) -> AnswerTensors:
        """What a server sends for `context` (frame indices, oldest first, as a live answer
        names them) asked for `delay` ticks, after the downlink codec."""
        return through_wire(self._answer(state, [context], float(delay))[0], self.codec)
