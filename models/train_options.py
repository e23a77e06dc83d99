"""What a training run does (`TrainOptions`), and what that means for the networks: which
parts are frozen, the parameter groups and their learning rates, and the configuration a run
writes (which remote stages it trained)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from splitcast.models.config import TOP_STAGE_STRIDE, ModelConfig, TrainedParts
from splitcast.models.losses import LOSSES
from splitcast.models.registry import SplitSystem

TRAIN_ONLY = ("all", "codec")


@dataclass
class TrainOptions:
    """What `splitcast train` does; defaults train `lite` on a CPU within the hour."""

    config: ModelConfig
    data: Path
    out: Path
    val_data: Path | None = None
    epochs: int = 2
    batch_size: int = 8
    accumulate: int = 1
    """Batches whose gradients are summed per optimizer step: the effective batch is
    batch_size x accumulate x processes, where one GPU's memory holds only batch_size."""
    lr: float = 2e-3
    pretrained_lr_scale: float = 0.3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 5.0
    delays: tuple[float, float] | None = None
    """The answer ages (ticks) drawn per sample; None: 0 to the configuration's horizon. The
    trained checkpoint's horizon is the top of this range."""
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
    device: str = "auto"
    compile: bool = False
    """Train through `torch.compile` (a slow first step, faster ones after)."""
    precision: str | None = None
    """fp32, bf16 or fp16 (autocast on CUDA); default bf16 on CUDA, fp32 on the CPU."""
    time_budget_s: float | None = None
    """Plan the schedule (cosine decay included) to end within this many seconds of training
    steps, timed on the first steps; the encoding cache is built before and not counted."""
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


def frozen_parts(system: SplitSystem, options: TrainOptions) -> list[nn.Module]:
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


def param_groups(system: SplitSystem, options: TrainOptions) -> list[dict[str, Any]]:
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


def trained_config(options: TrainOptions) -> ModelConfig:
    """The configuration with what decides which weights a checkpoint must store: whether the
    remote backbone is frozen, and which of its upper stages were trained (kept once set, so a
    later codec-only run or one training fewer stages still stores them)."""
    config = options.config
    trained_from = config.trained.remote_trained_from
    if options.train_remote_top:
        trained_from = min(trained_from or TOP_STAGE_STRIDE, options.remote_top_from)
    trained = TrainedParts(options.freeze_remote_backbone, trained_from)
    return config if trained == config.trained else replace(config, trained=trained)
