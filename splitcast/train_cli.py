"""`splitcast train` (train a configuration on a clip dataset) and `splitcast package` (a
trained or calibrated run as a small deployable checkpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitcast.arguments import (
    add_device_arguments,
    delay_range,
    non_negative_float,
    positive_int,
    probability,
)

LOSS_NAMES = ("fused", "local", "predictive", "image_only")


def _loss_weights(text: str) -> dict[str, float]:
    weights = dict.fromkeys(LOSS_NAMES, 1.0)
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep or name not in weights:
            raise argparse.ArgumentTypeError(
                f"expected NAME=WEIGHT with NAME in {', '.join(LOSS_NAMES)}, got {item!r}"
            )
        weights[name] = float(value)
    return weights


def add_train_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model configuration end to end (the four Dedelayed losses)",
        description="Train remote and local models together: fused, local-only, remote predictive "
        "and remote image-only losses, a delay drawn per sample, AdamW with warm-up and cosine "
        "decay, gradient clipping. With a frozen remote backbone (default) its outputs are cached "
        "once per frame. Writes model.safetensors, meta.json, history.json and a resumable "
        "training_state.pt to --out. Run under `torchrun --nproc_per_node N` for several "
        "processes.",
    )
    parser.add_argument(
        "--config",
        default="lite",
        help="configuration name (tiny, lite, paper) or a YAML file (default: %(default)s)",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="training clip directory (e.g. out/data/train)"
    )
    parser.add_argument(
        "--val-data",
        type=Path,
        help="validation clip directory (default: the sibling 'val' folder if present)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the checkpoint and logs"
    )
    parser.add_argument("--epochs", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, help="per process (default: %(default)s)"
    )
    parser.add_argument(
        "--accumulate",
        type=positive_int,
        default=1,
        metavar="N",
        help="sum the gradients of N batches per optimizer step: an effective batch of "
        "batch-size x N x processes where memory holds one batch (default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=2e-3,
        help="peak learning rate of new layers; pretrained ones get 0.3x (default: %(default)s)",
    )
    parser.add_argument(
        "--delays",
        type=delay_range,
        metavar="MIN-MAX",
        help="answer ages in ticks drawn per sample; the top is the trained checkpoint's answer "
        "horizon (default: 0 to the configuration's horizon, 30 ticks = 1 s at 30 fps)",
    )
    parser.add_argument(
        "--loss-weights",
        type=_loss_weights,
        default=dict.fromkeys(LOSS_NAMES, 1.0),
        metavar="NAME=W,...",
        help=f"weights of {', '.join(LOSS_NAMES)} (default: all 1)",
    )
    remote = parser.add_mutually_exclusive_group()
    remote.add_argument(
        "--train-remote-backbone",
        action="store_true",
        help="train the remote backbone too (no encoding cache; slow on a CPU)",
    )
    remote.add_argument(
        "--train-remote-top",
        nargs="?",
        type=int,
        const=16,
        choices=(8, 16),
        metavar="STRIDE",
        help="train the remote backbone's stages above STRIDE on its cached outputs at STRIDE: "
        "16 (the default) trains the top stage (stride 16 -> 32), 8 the stride-16 stage too; "
        "the rest stays frozen and cached",
    )
    parser.add_argument(
        "--forecast-warp",
        action="store_true",
        help="add the remote's forecast warp (features moved along a predicted motion field x "
        "delay) to the configuration; it starts as the identity, so an --init checkpoint "
        "keeps its outputs at step 0",
    )
    parser.add_argument(
        "--fused-dropout",
        type=probability,
        default=0.0,
        metavar="P",
        help="channel dropout on the local features in the fused pass only, so the fused "
        "model learns to lean on the downlink (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="where cached remote-backbone outputs live (default: 'cache' next to --data)",
    )
    parser.add_argument(
        "--class-weighting",
        choices=("inverse-sqrt", "none"),
        default="inverse-sqrt",
        help="loss weight per class from the training labels' frequencies (default: %(default)s)",
    )
    parser.add_argument("--warmup-steps", type=int, default=100, help="(default: %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=2, help="data loader processes (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    parser.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="plan the schedule (cosine decay included) to end within this many minutes of "
        "training steps, at the pace of the first 10; --epochs is then an upper bound",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from training_state.pt in --out"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads per process")
    add_device_arguments(parser)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="train through torch.compile (a slow first step, faster ones after)",
    )
    codec = parser.add_argument_group("starting point and downlink codec")
    codec.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="start from a trained checkpoint (name or folder) instead of --config; e.g. add a "
        "learned codec to a model trained without one",
    )
    codec.add_argument(
        "--codec",
        choices=("learned", "none"),
        help="'learned': train a learned downlink bottleneck (quantised, entropy-modelled) into "
        "the model; 'none': drop the --init checkpoint's bottleneck and train on raw features",
    )
    codec.add_argument(
        "--codec-width",
        type=positive_int,
        default=16,
        help="latent channels of the learned bottleneck (default: %(default)s)",
    )
    codec.add_argument(
        "--codec-stride",
        type=int,
        choices=(1, 2),
        default=2,
        help="spatial stride of the bottleneck's latent on the fusion grid (default: %(default)s)",
    )
    codec.add_argument(
        "--rate-lambda",
        type=non_negative_float,
        default=1e-5,
        help="weight of the estimated downlink bits per frame in the loss (default: %(default)s)",
    )
    codec.add_argument(
        "--distortion-weight",
        type=non_negative_float,
        default=1.0,
        help="weight of the bottleneck's reconstruction error (MSE over the features' variance) "
        "in the loss (default: %(default)s)",
    )
    codec.add_argument(
        "--train-only",
        choices=("all", "codec"),
        default="all",
        help="'codec': train the bottleneck alone, every other weight stays as loaded "
        "(default: %(default)s)",
    )
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    import torch

    from splitcast.models.checkpoint import CheckpointError, checkpoint_config
    from splitcast.models.registry import (
        get_config,
        load_config,
        with_bottleneck,
        without_bottleneck,
    )
    from splitcast.models.train_options import TrainOptions
    from splitcast.models.training import train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.init is not None:
        try:
            config = checkpoint_config(args.init)
        except CheckpointError as exc:
            raise SystemExit(f"splitcast train: --init: {exc}") from None
    else:
        path = Path(args.config)
        config = load_config(path) if path.suffix in (".yaml", ".yml") else get_config(args.config)
    if args.forecast_warp:
        config = config.with_network(forecast_warp=True)
    if args.codec == "learned":
        config = with_bottleneck(config, width=args.codec_width, stride=args.codec_stride)
    elif args.codec == "none":
        config = without_bottleneck(config)
    options = TrainOptions(
        config=config,
        data=args.data,
        out=args.out,
        val_data=args.val_data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        accumulate=args.accumulate,
        lr=args.lr,
        delays=args.delays,
        loss_weights=args.loss_weights,
        freeze_remote_backbone=not args.train_remote_backbone,
        train_remote_top=args.train_remote_top is not None,
        remote_top_from=args.train_remote_top or 16,
        fused_dropout=args.fused_dropout,
        cache_dir=args.cache_dir,
        class_weighting=args.class_weighting,
        warmup_steps=args.warmup_steps,
        workers=args.workers,
        seed=args.seed,
        max_steps=args.max_steps,
        time_budget_s=None if args.time_budget is None else args.time_budget * 60,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        resume=args.resume,
        init=args.init,
        rate_lambda=args.rate_lambda,
        distortion_weight=args.distortion_weight,
        train_only=args.train_only,
    )
    result = train(options)
    print(f"trained {result['steps']} steps in {result['seconds']:.0f} s; checkpoint in {args.out}")


def add_package_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "package",
        help="copy a trained or calibrated run as a deployable checkpoint (float16)",
        description="Write a training run's or a calibration's checkpoint as a packaged "
        "checkpoint folder: the trained weights in float16 (the packaged pretrained parts are not "
        "stored), its configuration with the combiner and per-age policy, and where it came from. "
        "Give --out models/checkpoints/NAME to ship it as `--model NAME`.",
    )
    parser.add_argument(
        "source",
        type=Path,
        metavar="RUN",
        help="checkpoint folder (a `train` run or a calibration's OUT/checkpoint)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the package to")
    parser.add_argument(
        "--float32", action="store_true", help="keep float32 weights (default: float16, smaller)"
    )
    parser.set_defaults(run=_run_package)


def _run_package(args: argparse.Namespace) -> None:
    from splitcast.models.checkpoint import export_checkpoint, load_checkpoint

    version = export_checkpoint(args.source, args.out, half=not args.float32)
    config = load_checkpoint(args.out)[0].config
    print(
        f"packaged {args.source} as {args.out}: {config.name} version {version}, combiner "
        f"{config.combiner} via {config.codec}, per-age policy for "
        f"{', '.join(config.policy) or 'no combiner (answers used as sent)'}"
    )
