"""Throughput of training-time sampling: JPEG decoding, joint augmentation and resizing.

    .venv/bin/python benchmarks/bench_sampler.py [--data DIR] [--json PATH]

Reports samples/s of `TemporalClipDataset` (K=4, delays 0..5, augment on) through a DataLoader
at each worker count. Without --data it writes a temporary clip dataset of moving smooth noise
as JPEG, so the figure includes real decoding; a DataLoader that keeps up with the model is
what training on a small machine needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from splitcast.data.clips import ClipDataset, ClipWriter, DatasetMeta, open_clips, write_meta
from splitcast.data.sampling import TemporalClipDataset, collate

FRAME_SIZE = (256, 512)
REMOTE_SIZE = (256, 512)
LOCAL_SIZE = (160, 320)
CONTEXT = 4
DELAYS = (0.0, 5.0)
PAN_PER_FRAME = 4


def smooth_noise(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """float32 [H, W, C] in [0, 1]: random values on a coarse grid, upsampled bicubically."""
    coarse = rng.random((max(2, height // 32), max(2, width // 32), channels), dtype=np.float32)
    fine = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(fine.reshape(height, width, channels), 0.0, 1.0)


def write_synthetic(root: Path, clips: int, frames: int, seed: int) -> ClipDataset:
    """Clips of a camera panning over smooth noise, every frame labelled with 19 classes."""
    rng = np.random.default_rng(seed)
    meta = DatasetMeta(fps=30.0, info={"generator": "bench_sampler smooth noise"})
    height, width = FRAME_SIZE
    names = [f"clip{i:03d}" for i in range(clips)]
    for name in names:
        canvas_w = width + PAN_PER_FRAME * frames
        image = (smooth_noise(rng, height, canvas_w, 3) * 255).astype(np.uint8)
        classes = (smooth_noise(rng, height, canvas_w, 1)[..., 0] * meta.num_classes).astype(
            np.uint8
        )
        writer = ClipWriter(root, name)
        for index in range(frames):
            left = index * PAN_PER_FRAME
            writer.write(
                index,
                np.ascontiguousarray(image[:, left : left + width]),
                np.ascontiguousarray(classes[:, left : left + width]),
            )
    write_meta(root, meta, names)
    return open_clips(root)


def measure(
    dataset: TemporalClipDataset, workers: int, batch_size: int, batches: int
) -> dict[str, Any]:
    """Time `batches` batches after a first one that pays for worker start-up."""
    sampler = RandomSampler(dataset, num_samples=(batches + 1) * batch_size)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate
    )
    started = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - started
    started = time.perf_counter()
    timed = sum(1 for _ in iterator)
    elapsed = time.perf_counter() - started
    return {
        "workers": workers,
        "batches": timed,
        "samples_per_s": timed * batch_size / elapsed,
        "ms_per_batch": 1000 * elapsed / timed,
        "first_batch_s": first,
    }


def run(clips: ClipDataset, args: argparse.Namespace) -> dict[str, Any]:
    dataset = TemporalClipDataset(
        clips,
        context=CONTEXT,
        delays=DELAYS,
        remote_size=REMOTE_SIZE,
        local_size=LOCAL_SIZE,
        augment=True,
        seed=args.seed,
    )
    results = [measure(dataset, w, args.batch_size, args.batches) for w in args.workers]
    return {
        "settings": {
            "items": len(dataset),
            "context": CONTEXT,
            "delays": list(DELAYS),
            "frame_size": list(clips.clips[0].frame(0).shape[:2]),
            "remote_size": list(REMOTE_SIZE),
            "local_size": list(LOCAL_SIZE),
            "batch_size": args.batch_size,
            "augment": True,
            "data": str(args.data) if args.data else "synthetic JPEG (temporary)",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="clip dataset directory (default: synthetic)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    parser.add_argument("--clips", type=int, default=4, help="synthetic clips")
    parser.add_argument("--frames", type=int, default=30, help="frames per synthetic clip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.data:
        report = run(open_clips(args.data), args)
    else:
        with tempfile.TemporaryDirectory(prefix="splitcast-bench-") as tmp:
            report = run(write_synthetic(Path(tmp), args.clips, args.frames, args.seed), args)

    settings = report["settings"]
    print(
        f"TemporalClipDataset: K={settings['context']}, frames {settings['frame_size']}, "
        f"remote {settings['remote_size']}, local {settings['local_size']}, "
        f"batch {settings['batch_size']}, augment on, {settings['data']}"
    )
    print(f"{report['machine']['cpus']} CPUs, {report['machine']['torch_threads']} torch threads")
    print(f"{'workers':>7}  {'samples/s':>9}  {'ms/batch':>8}  {'first batch s':>13}")
    for row in report["results"]:
        print(
            f"{row['workers']:>7}  {row['samples_per_s']:>9.1f}  {row['ms_per_batch']:>8.1f}  "
            f"{row['first_batch_s']:>13.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
