"""`splitcast data build|import|stats`: make, bring in and inspect clip datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from splitcast.data.splits import DEFAULT_CLIPS, DEFAULT_FRAMES, SPLIT_SEEDS


def add_data_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "data",
        help="build the synthetic benchmark, import footage, dataset statistics",
        description="Clip datasets: render the synthetic driving benchmark, import your own video "
        "with masks, and print statistics that show how much the scene moves.",
    )
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    build = sub.add_parser(
        "build",
        help="render a split of the synthetic driving benchmark",
        description="Render clips with exact Cityscapes-trainId labels (pybullet software "
        "renderer). "
        "Deterministic for a seed; train/val/test have disjoint default seeds "
        f"({', '.join(f'{k} {v}' for k, v in SPLIT_SEEDS.items())}). Re-running the same command "
        "finishes an interrupted build.",
    )
    build.add_argument("--split", choices=sorted(SPLIT_SEEDS), required=True)
    build.add_argument("--clips", type=int, help=f"clips to render (default: {DEFAULT_CLIPS})")
    build.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_FRAMES,
        help="frames per clip (default: %(default)s; d=10, K=4 at stride 3 needs 40)",
    )
    build.add_argument(
        "--height", type=int, default=256, help="frame height in pixels (default: %(default)s)"
    )
    build.add_argument("--width", type=int, help="frame width (default: twice the height)")
    build.add_argument("--fps", type=float, default=30.0, help="frame rate (default: %(default)s)")
    build.add_argument("--seed", type=int, help="override the split's default seed")
    build.add_argument(
        "--motion",
        type=float,
        default=1.0,
        help="multiply every speed (ego and others) by this (default: %(default)s)",
    )
    build.add_argument(
        "--shadows", action="store_true", help="render sun shadows (about 2.5x slower, subtle)"
    )
    build.add_argument(
        "--format",
        choices=("jpg", "png"),
        default="jpg",
        help="frame file format (default: %(default)s; labels are always PNG)",
    )
    build.add_argument(
        "--quality", type=int, default=95, help="JPEG quality (default: %(default)s)"
    )
    build.add_argument("--workers", type=int, help="render processes (default: one per CPU core)")
    build.add_argument("--out", type=Path, help="output directory (default: out/data/<split>)")
    build.set_defaults(run=_run_build)

    imported = sub.add_parser(
        "import",
        help="turn a video plus per-frame mask PNGs into the clip format",
        description="Cut a video into clips of --clip-len frames and pair frames with masks named "
        "by frame index (e.g. 000042.png or 42.png; uint8 class ids, 255 = ignore: Cityscapes "
        "trainIds unless --classes names your own). Frames without a mask stay unlabelled.",
    )
    imported.add_argument("--video", type=Path, required=True)
    imported.add_argument("--masks", type=Path, required=True, help="folder of mask PNGs")
    imported.add_argument("--out", type=Path, required=True)
    imported.add_argument("--clip-len", type=int, required=True, help="frames per clip")
    imported.add_argument("--fps", type=float, help="override the video's frame rate")
    imported.add_argument(
        "--format",
        choices=("jpg", "png"),
        default="jpg",
        help="frame file format (default: %(default)s)",
    )
    imported.add_argument(
        "--classes",
        type=_class_names,
        metavar="NAME,NAME,...",
        help="your masks' class names in id order, e.g. background,person (default: the 19 "
        "Cityscapes trainId classes)",
    )
    imported.set_defaults(run=_run_import)

    stats = sub.add_parser(
        "stats",
        help="class frequencies, stale-label mIoU per delay and stride, small classes",
        description="Print class frequencies, the mIoU of label t-d*s used as a prediction of "
        "label t "
        "(d = 0..max, stride 1, 2, 3) and the median instance area per class.",
    )
    stats.add_argument("dir", type=Path, help="a clip-format dataset directory")
    stats.add_argument(
        "--max-delay", type=int, default=10, help="largest d in ticks (default: %(default)s)"
    )
    stats.add_argument(
        "--json", action="store_true", help="print one JSON object instead of tables"
    )
    stats.set_defaults(run=_run_stats)


def _class_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected two or more distinct comma-separated class names, got {text!r}"
        )
    return names


def _run_build(args: argparse.Namespace) -> None:
    from splitcast.data.build import build_split
    from splitcast.data.scene.generator import SceneSettings

    settings = SceneSettings(
        height=args.height, width=args.width, fps=args.fps, motion=args.motion, shadows=args.shadows
    )
    out = args.out or Path("out/data") / args.split
    report = build_split(
        out,
        args.split,
        args.clips,
        args.frames,
        settings,
        args.seed,
        args.format,
        args.quality,
        args.workers,
    )
    print(
        f"built {report.clips} clips x {report.frames_per_clip} frames in {out} "
        f"({report.rendered_clips} rendered now in {report.seconds:.1f} s, "
        f"{report.render_fps:.1f} frames/s)"
    )


def _run_import(args: argparse.Namespace) -> None:
    from splitcast.data.importer import import_video

    dataset = import_video(
        args.video,
        args.masks,
        args.out,
        args.clip_len,
        args.fps,
        args.format,
        classes=args.classes,
    )
    labelled = sum(len(clip.labelled) for clip in dataset.clips)
    print(f"imported {len(dataset)} clips ({labelled} labelled frames) into {args.out}")


def _run_stats(args: argparse.Namespace) -> None:
    from splitcast.data.clips import open_clips
    from splitcast.data.stats import dataset_stats, format_stats

    stats = dataset_stats(open_clips(args.dir), max_delay=args.max_delay, progress=not args.json)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
