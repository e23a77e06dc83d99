"""End-to-end training of the remote and local models with the four Dedelayed losses
(`splitcast.models.losses`).

Per sample a delay d is drawn; the remote model sees the K frames ending d ticks before the
local frame; the loss weights are configurable, all 1 by default. Training can start
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

import contextlib
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from splitcast.data.clips import ClipDataset, DataError, open_clips
from splitcast.data.sampling import Augmentation, TemporalClipDataset, collate
from splitcast.files import write_json
from splitcast.models.cache import CachedClipDataset, build_cache, collate_cached
from splitcast.models.checkpoint import (
    load_checkpoint,
    load_history,
    load_system_state,
    load_training_state,
    save_checkpoint,
    system_state,
)
from splitcast.models.devices import autocast, device_for_rank, moved, resolve_precision
from splitcast.models.losses import LossModel, class_weights
from splitcast.models.registry import (
    build,
)
from splitcast.models.train_options import TrainOptions, frozen_parts, param_groups, trained_config
from splitcast.models.train_validation import validate
from splitcast.signals import interrupts_deferred

STATE_FILE = "training_state.pt"
BUDGET_PROBE_STEPS = 10
"""A time budget's plan is made on the pace of this many first steps."""


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


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
        self.device = device_for_rank(options.device, self.world)
        self.precision = resolve_precision(options.precision, self.device)
        torch.manual_seed(options.seed)
        train_clips = open_clips(options.data)
        if options.train_remote_top and not options.freeze_remote_backbone:
            raise ValueError(
                "training the remote backbone's top stage alone needs the rest of it frozen; "
                "drop one of the two options"
            )
        config = replace(trained_config(options), fps=train_clips.meta.fps)
        if options.delays is None:
            self.delays = (0.0, float(config.horizon_ticks))
        else:  # answers as old as any trained on are inside the checkpoint's horizon
            self.delays = options.delays
            config = replace(config, horizon_ticks=int(options.delays[1]))
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
        self.frozen = frozen_parts(self.system, options)
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
            self.config.trained.remote_trained_from,
            options.fused_dropout,
        )
        self.model.to(self.device)
        self.ddp: nn.Module = (
            DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.world > 1
            else self.model
        )
        if options.compile:
            self.ddp = torch.compile(self.ddp)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.system, options), lr=options.lr, weight_decay=options.weight_decay
        )
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.total: int | None = None
        self.planned = False
        self.start_epoch = 0
        if options.resume:  # before the feature cache: a bad state is found at once
            self._resume()
        self.train_set = self._dataset(train_clips, train=True)
        val_path = options.val_data or _sibling_val(options.data)
        self.val_set = self._dataset(open_clips(val_path), train=False) if val_path else None

    def _dataset(self, clips: ClipDataset, train: bool) -> CachedClipDataset | TemporalClipDataset:
        config, options = self.config, self.options
        frames = TemporalClipDataset(
            clips,
            context=config.context_frames,
            delays=self.delays if train else (0.0, max(max(options.val_delays), self.delays[1])),
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
                    recomputed_from=config.trained.remote_trained_from,
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
            pin_memory=self.device.type == "cuda",
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
        steps_per_epoch = len(self.train_set) // (
            options.batch_size * self.world * options.accumulate
        )
        if self.total is None:
            self.total = options.epochs * steps_per_epoch
            if options.max_steps is not None:
                self.total = min(self.total, options.max_steps)
        if self.total < 1:
            raise DataError(
                f"{len(self.train_set)} training samples make no batch of {options.batch_size}"
            )
        started = time.perf_counter()
        for epoch in range(self.start_epoch, options.epochs):
            if self.step >= self.total:
                break
            sums, count = self._epoch(epoch, steps_per_epoch, started)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": self.step,
                "seconds": round(time.perf_counter() - started, 1),
                "train_loss": {
                    name: round(value / max(1, count), 4) for name, value in sums.items()
                },
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

    def _epoch(
        self, epoch: int, steps_per_epoch: int, started: float
    ) -> tuple[dict[str, float], int]:
        """One pass over the training set, stopping at step `self.total`; the summed loss parts
        and the number of batches."""
        options = self.options
        self._set_train_mode()
        sums: dict[str, float] = {}
        count = 0
        bar = tqdm(
            self._loader(self.train_set, True, epoch),
            desc=f"epoch {epoch + 1}"
            + (f" (step {self.step}/{self.total})" if self.planned else f"/{options.epochs}"),
            unit="batch",
            disable=not options.progress or self.rank != 0,
            total=steps_per_epoch * options.accumulate,
        )
        for index, batch in enumerate(bar):
            if self.step >= self.total:
                break
            stepping = (index + 1) % options.accumulate == 0
            # DDP averages gradients across ranks only on the batch that steps
            synced = stepping or self.world == 1
            with contextlib.nullcontext() if synced else self.ddp.no_sync():
                with autocast(self.device, self.precision):
                    loss, parts = self.ddp(moved(batch, self.device))
                self.scaler.scale(loss / options.accumulate).backward()
            count += 1
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if stepping:
                self._optimizer_step()
                if options.time_budget_s and not self.planned and self.step == BUDGET_PROBE_STEPS:
                    self._plan_to_budget(time.perf_counter() - started)
        return sums, count

    def _optimizer_step(self) -> None:
        """One update from the gradients summed since the last, at the schedule's rate."""
        options = self.options
        factor = _lr_factor(self.step, self.total, options.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = options.lr * factor * group["lr_scale"]
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(
            [p for g in self.optimizer.param_groups for p in g["params"]], options.grad_clip
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _plan_to_budget(self, seconds: float) -> None:
        """Set the total steps so the run ends within the time budget, at the pace of the
        steps taken so far."""
        pace = seconds / self.step
        affordable = self.step + int((self.options.time_budget_s - seconds) / pace)
        self.total = max(self.step, min(self.total, affordable))
        self.planned = True

    def validate(self) -> dict[str, dict[str, float]]:
        assert self.val_set is not None
        options = self.options
        return validate(
            self.model,
            self.val_set,
            self.meta,
            options.val_delays,
            options.val_every,
            options.batch_size,
            options.workers,
            self.device,
            self.precision,
        )

    def _save(self, epoch: int) -> None:
        """The checkpoint and the state `--resume` continues from, written together (a stop
        asked for meanwhile takes effect once both are whole)."""
        with interrupts_deferred():
            self._write_checkpoint(epoch)

    def _write_checkpoint(self, epoch: int) -> None:
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
            "total": torch.tensor(self.total),
            "planned": torch.tensor(self.planned),
            "model": system_state(self.system),
            "optimizer": self.optimizer.state_dict(),
        }
        torch.save(state, options.out / f"{STATE_FILE}.partial")
        (options.out / f"{STATE_FILE}.partial").rename(options.out / STATE_FILE)
        write_json(options.out / "history.json", self.history)

    def _resume(self) -> None:
        path = self.options.out / STATE_FILE
        if not path.is_file():
            raise DataError(f"--resume: no {STATE_FILE} in {self.options.out}")
        state = load_training_state(path, self.system)
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = int(state["epoch"])
        self.step = int(state["step"])
        if bool(state.get("planned", False)):
            # a time budget's plan holds; otherwise the total follows the options of the resume
            self.total = int(state["total"])
            self.planned = True
        self.history = load_history(self.options.out / "history.json")


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
