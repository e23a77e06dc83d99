"""End-to-end training of the remote and local models with the four Dedelayed losses.

Per sample a delay d is drawn; the remote model sees the K frames ending d ticks before the
local frame. Losses (weights configurable, all 1 by default):
- fused: local model with the downlink features added, against label t;
- local: the same local model with no downlink (keeps the fallback good);
- predictive: the remote model's own delay-conditioned logits, against label t;
- image_only: the remote model on frame t alone at d = 0 (the conventional baseline).

With a learned downlink bottleneck the fused branch sees the features after quantisation, and
the loss adds `rate_lambda` x the entropy model's estimated bits per frame and
`distortion_weight` x the reconstruction's mean squared error relative to the features'
variance (the fused loss alone is a weak signal when fusion gains little, and the rate term
then wins by sending nothing useful). Training can start
from a trained checkpoint (`init`), e.g. to add a bottleneck to a model trained without one,
and can train the bottleneck alone (`train_only="codec"`), leaving every other weight as it was.

With a frozen remote backbone (the `lite` default) its outputs are cached once per frame and
training runs on the cache. `train_remote_top` still trains the backbone's top stage (stride
16 -> 32) on the cached stride-16 features, or with `remote_top_from=8` the stride-16 stage
too, on the cached stride-8 ones: the remote's semantics adapt to the data at a fraction of
the cost of training the whole backbone uncached; those stages' batch-norm statistics stay as
pretrained. Runs under torchrun as well (DDP; gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from splitcast.data.clips import ClipDataset, DataError, open_clips
from splitcast.data.metrics import ConfusionMatrix
from splitcast.data.sampling import Augmentation, Batch, TemporalClipDataset, collate
from splitcast.models.cache import CachedBatch, CachedClipDataset, build_cache, collate_cached
from splitcast.models.checkpoint import (
    load_checkpoint,
    load_system_state,
    save_checkpoint,
    system_state,
)
from splitcast.models.layers import resize
from splitcast.models.local import Features
from splitcast.models.registry import (
    TOP_STAGE_STRIDE,
    ModelConfig,
    SplitSystem,
    build,
    max_context_gap,
    remote_trained_from,
)

LOSSES = ("fused", "local", "predictive", "image_only")
TRAIN_ONLY = ("all", "codec")
STATE_FILE = "training_state.pt"


@dataclass
class TrainOptions:
    """What `splitcast train` does; defaults train `lite` on a CPU within the hour."""

    config: ModelConfig
    data: Path
    out: Path
    val_data: Path | None = None
    epochs: int = 2
    batch_size: int = 8
    lr: float = 2e-3
    pretrained_lr_scale: float = 0.3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 5.0
    delays: tuple[float, float] = (0.0, 5.0)
    loss_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LOSSES, 1.0))
    freeze_remote_backbone: bool = True
    train_remote_top: bool = False
    remote_top_from: int = TOP_STAGE_STRIDE
    fused_dropout: float = 0.0
    class_weighting: str = "inverse-sqrt"
    cache_dir: Path | None = None
    val_delays: tuple[float, ...] = (0.0, 3.0, 5.0)
    val_every: int = 4
    workers: int = 2
    seed: int = 0
    max_steps: int | None = None
    resume: bool = False
    progress: bool = True
    init: str | None = None
    rate_lambda: float = 0.0
    distortion_weight: float = 1.0
    train_only: str = "all"

    @property
    def trains_remote_top(self) -> bool:
        """Whether this run updates the remote backbone's top stage (not in a codec-only run)."""
        return self.train_remote_top and self.train_only == "all"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class LossModel(nn.Module):
    """Computes the four losses for a batch; one module so DDP sees every trained weight."""

    def __init__(
        self,
        system: SplitSystem,
        weights: dict[str, float],
        ignore_index: int,
        class_weights: torch.Tensor | None = None,
        rate_lambda: float = 0.0,
        distortion_weight: float = 0.0,
        remote_top_from: int | None = None,
        fused_dropout: float = 0.0,
    ) -> None:
        """`remote_top_from`: the stride above which the remote backbone is recomputed from
        the cached features (trained unless frozen); None: every cached output is used as
        stored."""
        super().__init__()
        self.remote = system.remote
        self.remote_top_from = remote_top_from
        self.fused_dropout = fused_dropout
        self.local = system.local
        self.bottleneck = system.bottleneck
        self.config = system.config
        self.weights = weights
        self.rate_lambda = rate_lambda
        self.distortion_weight = distortion_weight
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", class_weights, persistent=False)

    def encodings(self, batch: Batch | CachedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Remote encodings [B, C, K, h, w] of the context and [B, C, h, w] of frame t."""
        if isinstance(batch, CachedBatch):
            batch_size, steps = batch.features[0].shape[:2]
            features = [f.flatten(0, 1) for f in batch.features]
            if self.remote_top_from is not None:
                features = self.remote.backbone.recompute_from(self.remote_top_from, features)
            flat = self.remote.encode_features(features)
        else:
            batch_size, steps = batch.remote.shape[0], batch.remote.shape[1] + 1
            frames = torch.cat([batch.remote, batch.remote_now.unsqueeze(1)], dim=1)
            flat = self.remote.encode(frames.flatten(0, 1))
        grouped = flat.view(batch_size, steps, *flat.shape[1:])
        return grouped[:, :-1].transpose(1, 2), grouped[:, -1]

    def outputs(
        self, batch: Batch | CachedBatch
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Logits of every branch at the label size, and with a bottleneck its estimated bits
        per item and relative distortion."""
        size = tuple(batch.label.shape[-2:])
        local_size = tuple(batch.local.shape[-2:])
        context, now = self.encodings(batch)
        heads = self.remote.outputs(context, batch.delay, local_size)
        downlink, predictive = heads["downlink"], heads["logits"]
        codec: dict[str, torch.Tensor] = {}
        if self.bottleneck is not None:
            target = downlink.detach()
            downlink, codec["bits"] = self.bottleneck(downlink)
            codec["distortion"] = F.mse_loss(downlink, target) / target.var().clamp_min(1e-8)
        features = self.local.encode(batch.local)
        logits = {
            "fused": resize(
                self.local.decode(self._dropped(features), downlink, local_size, features), size
            ),
            "local": resize(self.local.decode(features, None, local_size), size),
            "predictive": resize(predictive, size),
            "image_only": resize(self.remote.image_only_from_encoding(now), size),
        }
        return logits, codec

    def _dropped(self, features: Features) -> Features:
        """The local features with channel dropout (in training, when asked for): the fused
        pass then cannot rely on them alone and learns to use the downlink."""
        if not (self.training and self.fused_dropout):
            return features
        return tuple(None if f is None else F.dropout2d(f, self.fused_dropout) for f in features)

    def forward(self, batch: Batch | CachedBatch) -> tuple[torch.Tensor, dict[str, float]]:
        outputs, codec = self.outputs(batch)
        parts = {
            name: F.cross_entropy(
                logits, batch.label, weight=self.class_weights, ignore_index=self.ignore_index
            )
            for name, logits in outputs.items()
        }
        total = sum(self.weights.get(name, 0.0) * loss for name, loss in parts.items())
        report = {name: float(loss.detach()) for name, loss in parts.items()}
        if codec:
            bits = codec["bits"].mean()
            total = total + self.rate_lambda * bits + self.distortion_weight * codec["distortion"]
            report["bits"] = float(bits.detach())
            report["distortion"] = float(codec["distortion"].detach())
        return total, report


def class_weights(clips: ClipDataset, scheme: str, progress: bool = False) -> torch.Tensor | None:
    """Per-class loss weights from the training labels' class frequencies.

    `inverse-sqrt`: (median frequency / frequency) ** 0.5, clipped to [0.2, 10]: rare classes
    (poles, signs, people, walls) would otherwise barely move the loss, and the model would
    learn never to predict them. Classes absent from the labels get weight 0. `none`: plain
    cross-entropy.
    """
    if scheme == "none":
        return None
    if scheme != "inverse-sqrt":
        raise ValueError(f"unknown class weighting {scheme!r}; choose inverse-sqrt or none")
    meta = clips.meta
    counts = np.zeros(meta.num_classes, dtype=np.int64)
    for clip in tqdm(clips.clips, desc="class frequencies", unit="clip", disable=not progress):
        for index in clip.labelled:
            label = clip.label(index)
            counts += np.bincount(label[label != meta.ignore_index], minlength=meta.num_classes)[
                : meta.num_classes
            ]
    present = counts > 0
    if not present.any():
        raise DataError("the training labels hold no class ids")
    frequency = counts / counts.sum()
    median = np.median(frequency[present])
    weights = np.where(
        present, np.clip((median / np.maximum(frequency, 1e-12)) ** 0.5, 0.2, 10.0), 0.0
    )
    return torch.tensor(weights, dtype=torch.float32)


def _freeze(system: SplitSystem, options: TrainOptions) -> list[nn.Module]:
    """Stop gradients to frozen parts; returns them (they stay in eval mode, so a trained
    remote top stage keeps its pretrained batch-norm statistics)."""
    train_only = options.train_only
    if train_only == "codec":
        if system.bottleneck is None:
            raise ValueError("--train-only codec needs a learned codec (--codec learned)")
        frozen = [system.remote, system.local]
    elif train_only != "all":
        raise ValueError(f"unknown --train-only {train_only!r}; choose {', '.join(TRAIN_ONLY)}")
    else:
        frozen = []
    if options.freeze_remote_backbone:
        frozen.append(system.remote.backbone)
    if system.local.stages.frozen is not None:
        frozen.append(system.local.stages.frozen)
    for module in frozen:
        module.requires_grad_(False)
    if options.trains_remote_top:
        for stage in system.remote.backbone.stages_from(options.remote_top_from):
            stage.requires_grad_(True)
    return frozen


def _param_groups(system: SplitSystem, options: TrainOptions) -> list[dict[str, Any]]:
    """Pretrained backbone weights learn more slowly than new layers."""
    pretrained, fresh = [], []
    pretrained_modules = {id(p) for p in system.local.stages.parameters()} | {
        id(p) for p in system.remote.backbone.parameters()
    }
    for module in system.modules().values():
        for param in module.parameters():
            if param.requires_grad:
                (pretrained if id(param) in pretrained_modules else fresh).append(param)
    return [
        {"params": fresh, "lr_scale": 1.0},
        {"params": pretrained, "lr_scale": options.pretrained_lr_scale},
    ]


def _with_training_params(options: TrainOptions) -> ModelConfig:
    """The configuration with what decides which weights a checkpoint must store: whether the
    remote backbone is frozen, and which of its upper stages were trained (kept once set, so a
    later codec-only run or one training fewer stages still stores them)."""
    params = {**options.config.params, "freeze_remote_backbone": options.freeze_remote_backbone}
    if options.train_remote_top:
        earlier = remote_trained_from(params) or TOP_STAGE_STRIDE
        params["train_remote_top"] = True
        if min(earlier, options.remote_top_from) != TOP_STAGE_STRIDE:
            params["remote_top_from"] = min(earlier, options.remote_top_from)
    if params == options.config.params:
        return options.config
    return ModelConfig.from_dict({**options.config.to_dict(), "params": params})


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Owns the data, the optimiser and the loop of one training run."""

    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        self.rank, self.world = _distributed()
        torch.manual_seed(options.seed)
        train_clips = open_clips(options.data)
        if options.train_remote_top and not options.freeze_remote_backbone:
            raise ValueError(
                "training the remote backbone's top stage alone needs the rest of it frozen; "
                "drop one of the two options"
            )
        config = _with_training_params(options)
        self.system = build(config, pretrained=True, num_classes=train_clips.meta.num_classes)
        self.initialised_from: dict[str, Any] | None = None
        if options.init is not None:
            source, source_meta = load_checkpoint(options.init)
            load_system_state(self.system, system_state(source), strict=False)
            self.initialised_from = {
                "checkpoint": options.init,
                "version": source.config.version,
                "training": source_meta.get("training"),
                "history": source_meta.get("history"),
            }
        self.config = self.system.config
        self.meta = train_clips.meta
        self.frozen = _freeze(self.system, options)
        self.train_set = self._dataset(train_clips, train=True)
        val_path = options.val_data or _sibling_val(options.data)
        self.val_set = self._dataset(open_clips(val_path), train=False) if val_path else None
        weights = class_weights(
            train_clips, options.class_weighting, options.progress and self.rank == 0
        )
        self.model = LossModel(
            self.system,
            options.loss_weights,
            self.meta.ignore_index,
            weights,
            options.rate_lambda,
            options.distortion_weight,
            remote_trained_from(self.config.params),
            options.fused_dropout,
        )
        self.ddp: nn.Module = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.system, options), lr=options.lr, weight_decay=options.weight_decay
        )
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.start_epoch = 0
        if options.resume:
            self._resume()

    def _dataset(self, clips: ClipDataset, train: bool) -> CachedClipDataset | TemporalClipDataset:
        config, options = self.config, self.options
        frames = TemporalClipDataset(
            clips,
            context=config.context_frames,
            delays=options.delays
            if train
            else (0.0, max(max(options.val_delays), options.delays[1])),
            max_gap=max_context_gap(config) if train else 1,
            remote_size=config.remote_size,
            local_size=config.local_size,
            label_size=config.local_size,
            augment=Augmentation(scale=(1.0, 1.0))
            if train and not options.freeze_remote_backbone
            else False,
            seed=options.seed,
        )
        if not options.freeze_remote_backbone:
            return frames
        backbone = self.system.remote.backbone
        cache_root = options.cache_dir or options.data.parent / "cache"
        # Rank 0 encodes; the others wait, then open the finished cache.
        for turn in range(2 if self.world > 1 else 1):
            if turn == 1:
                dist.barrier()
            if (self.rank == 0) == (turn == 0):
                cache = build_cache(
                    clips,
                    backbone,
                    config.remote_size,
                    config.uplink_format,
                    config.uplink_quality,
                    cache_root,
                    recomputed_from=remote_trained_from(config.params),
                    progress=options.progress and self.rank == 0,
                )
        return CachedClipDataset(frames, cache, flip=train, jitter=0.2 if train else 0.0)

    def _loader(self, dataset: Any, shuffle: bool, epoch: int) -> DataLoader:
        dataset.set_epoch(epoch)
        sampler = (
            DistributedSampler(dataset, shuffle=shuffle, seed=self.options.seed)
            if self.world > 1
            else None
        )
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.options.seed + epoch)
        return DataLoader(
            dataset,
            batch_size=self.options.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.options.workers,
            collate_fn=collate_cached if isinstance(dataset, CachedClipDataset) else collate,
            drop_last=shuffle,
            generator=generator,
            persistent_workers=False,
        )

    def _set_train_mode(self) -> None:
        """Train mode, except frozen parts and the pretrained local encoder's batch norms: the
        fused and local-only passes feed it different inputs, and mixing their statistics
        would fit neither."""
        self.model.train()
        for module in self.frozen:
            module.eval()
        for module in self.system.local.stages.modules():
            if (
                isinstance(module, nn.modules.batchnorm._BatchNorm)
                and self.system.local.stages.frozen is not None
            ):
                module.eval()

    def run(self) -> dict[str, Any]:
        options = self.options
        steps_per_epoch = len(self.train_set) // (options.batch_size * self.world)
        total = options.epochs * steps_per_epoch
        if options.max_steps is not None:
            total = min(total, options.max_steps)
        if total < 1:
            raise DataError(
                f"{len(self.train_set)} training samples make no batch of {options.batch_size}"
            )
        started = time.perf_counter()
        for epoch in range(self.start_epoch, options.epochs):
            if self.step >= total:
                break
            self._set_train_mode()
            sums: dict[str, float] = {}
            count = 0
            bar = tqdm(
                self._loader(self.train_set, True, epoch),
                desc=f"epoch {epoch + 1}/{options.epochs}",
                unit="batch",
                disable=not options.progress or self.rank != 0,
                total=steps_per_epoch,
            )
            for batch in bar:
                if self.step >= total:
                    break
                factor = _lr_factor(self.step, total, options.warmup_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = options.lr * factor * group["lr_scale"]
                loss, parts = self.ddp(batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]], options.grad_clip
                )
                self.optimizer.step()
                self.step += 1
                count += 1
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + value
                bar.set_postfix(loss=f"{loss.item():.3f}")
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": self.step,
                "seconds": round(time.perf_counter() - started, 1),
            }
            record["train_loss"] = {
                name: round(value / max(1, count), 4) for name, value in sums.items()
            }
            if self.val_set is not None and self.rank == 0:
                record["val_miou"] = self.validate()
            self.history.append(record)
            if self.rank == 0:
                self._save(epoch + 1)
                print(json.dumps(record), flush=True)
        if self.world > 1:
            dist.barrier()
        return {
            "history": self.history,
            "seconds": round(time.perf_counter() - started, 1),
            "steps": self.step,
        }

    @torch.inference_mode()
    def validate(self) -> dict[str, dict[str, float]]:
        """mIoU (label at the local size) of fused, local-only and remote predictive outputs at
        the validation delays, on every `val_every`-th validation item."""
        assert self.val_set is not None
        self.model.eval()
        subset = torch.utils.data.Subset(
            self.val_set, range(0, len(self.val_set), self.options.val_every)
        )
        results: dict[str, dict[str, float]] = {}
        frames = (
            self.val_set.frames if isinstance(self.val_set, CachedClipDataset) else self.val_set
        )
        original = frames.delays
        try:
            for delay in self.options.val_delays:
                frames.set_delays(delay)
                matrices = {
                    name: ConfusionMatrix(self.meta.num_classes, self.meta.ignore_index)
                    for name in ("fused", "local", "predictive")
                }
                loader = DataLoader(
                    subset,
                    batch_size=self.options.batch_size,
                    num_workers=self.options.workers,
                    collate_fn=collate_cached
                    if isinstance(self.val_set, CachedClipDataset)
                    else collate,
                )
                for batch in loader:
                    outputs, _ = self.model.outputs(batch)
                    for name, matrix in matrices.items():
                        matrix.update(outputs[name].argmax(1), batch.label)
                results[f"d={delay:g}"] = {name: round(m.miou(), 2) for name, m in matrices.items()}
        finally:
            frames.set_delays(original)
        return results

    def _save(self, epoch: int) -> None:
        options = self.options
        meta = {
            "data": {
                "train": str(options.data),
                "val": str(options.val_data or _sibling_val(options.data)),
                "meta": self.meta.to_json([]),
            },
            "training": options.to_dict(),
            "history": self.history,
        }
        if self.initialised_from is not None:
            meta["initialised_from"] = self.initialised_from
        if self.system.bottleneck is not None:
            self.system.bottleneck.finalize_tables()
        save_checkpoint(self.system, options.out, meta)
        state = {
            "epoch": torch.tensor(epoch),
            "step": torch.tensor(self.step),
            "model": system_state(self.system),
            "optimizer": self.optimizer.state_dict(),
        }
        torch.save(state, options.out / f"{STATE_FILE}.partial")
        (options.out / f"{STATE_FILE}.partial").rename(options.out / STATE_FILE)
        (options.out / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")

    def _resume(self) -> None:
        path = self.options.out / STATE_FILE
        if not path.is_file():
            raise DataError(f"--resume: no {STATE_FILE} in {self.options.out}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_system_state(self.system, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = int(state["epoch"])
        self.step = int(state["step"])
        history = self.options.out / "history.json"
        self.history = json.loads(history.read_text()) if history.is_file() else []


def _sibling_val(train: Path) -> Path | None:
    """`.../train` -> `.../val` when that exists (the layout `splitcast data build` makes)."""
    candidate = train.parent / "val"
    return candidate if train.name == "train" and (candidate / "meta.json").is_file() else None


def train(options: TrainOptions) -> dict[str, Any]:
    """Run training; returns the history (also written to `options.out`)."""
    trainer = Trainer(options)
    try:
        return trainer.run()
    finally:
        if trainer.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
