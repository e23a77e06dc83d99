"""`splitcast data build`: render a split of the synthetic driving benchmark to the clip format.

Each clip's seed derives from the split's seed and the clip's index, and the three splits
have different default seeds, so train, val and test never share a street. Clips are rendered
in parallel worker processes, each into a temporary folder that is renamed when complete:
an interrupted build keeps its finished clips, and running the same command again renders
only what is missing.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from splitcast.data.clips import ClipWriter, DataError, DatasetMeta, write_meta
from splitcast.data.scene.generator import (
    OCCURRING_CLASSES,
    SceneRenderer,
    SceneSettings,
    plan_dict,
)
from splitcast.data.splits import DEFAULT_CLIPS, DEFAULT_FRAMES, SPLIT_SEEDS

SETTINGS_FILE = "build_settings.json"


@dataclass(frozen=True)
class BuildReport:
    """What a build did; `render_fps` is frames rendered per second of wall time here."""

    out: Path
    clips: int
    rendered_clips: int
    frames_per_clip: int
    seconds: float
    render_fps: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "out": str(self.out)}


def clip_seed(split_seed: int, index: int) -> int:
    return int(np.random.SeedSequence([split_seed, index]).generate_state(1)[0])


def _render_job(job: tuple[Any, ...]) -> None:
    _render_one(*job)


def _render_one(
    out: Path,
    name: str,
    seed: int,
    frames: int,
    settings: SceneSettings,
    frame_format: str,
    quality: int,
) -> tuple[str, dict[str, Any]]:
    """Render one clip into `<name>.partial`, then rename it into place (worker process)."""
    partial = out / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    writer = ClipWriter(out, partial.name, frame_format, quality)
    with SceneRenderer(settings) as renderer:
        plan, rendered = renderer.clip(seed, frames)
        for index, (rgb, label) in enumerate(rendered):
            writer.write(index, rgb, label)
    info = {"seed": seed, **plan_dict(plan)}
    (partial / "clip.json").write_text(json.dumps(info, indent=2) + "\n")
    partial.rename(out / name)
    return name, info


def build_split(
    out: Path,
    split: str,
    clips: int | None = None,
    frames: int = DEFAULT_FRAMES,
    settings: SceneSettings | None = None,
    seed: int | None = None,
    frame_format: str = "jpg",
    quality: int = 95,
    workers: int | None = None,
    progress: bool = True,
) -> BuildReport:
    """Render (or finish rendering) a split into `out`."""
    settings = settings or SceneSettings()
    if split not in SPLIT_SEEDS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SEEDS)}")
    clips = DEFAULT_CLIPS[split] if clips is None else clips
    if clips < 1 or frames < 1:
        raise DataError("--clips and --frames must be at least 1")
    split_seed = SPLIT_SEEDS[split] if seed is None else seed
    wanted = {
        "split": split,
        "seed": split_seed,
        "clips": clips,
        "frames": frames,
        "frame_format": frame_format,
        "quality": quality,
        "generator": settings.to_dict(),
    }
    _claim(out, wanted)
    names = [f"clip_{index:04d}" for index in range(clips)]
    todo = [
        (name, clip_seed(split_seed, i))
        for i, name in enumerate(names)
        if not (out / name / "clip.json").is_file()
    ]
    start = time.perf_counter()
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(
        total=len(names),
        initial=len(names) - len(todo),
        desc=f"build {split}",
        unit="clip",
        disable=not progress,
    )
    # Workers start from a clean process (forkserver), not a fork of this one: a fork copies
    # the caller's threads' locks (a server, a gRPC channel) and can hang in the child.
    context = multiprocessing.get_context("forkserver")
    jobs = [(out, name, s, frames, settings, frame_format, quality) for name, s in todo]
    with context.Pool(workers) as pool:  # leaving it terminates the workers, also on Ctrl-C
        for _ in pool.imap_unordered(_render_job, jobs):
            bar.update()
    bar.close()
    seconds = time.perf_counter() - start
    clip_info = {name: json.loads((out / name / "clip.json").read_text()) for name in names}
    meta = DatasetMeta(
        fps=settings.fps,
        info={
            "generator": settings.to_dict(),
            "split": split,
            "seed": split_seed,
            "frames_per_clip": frames,
            "occurring_classes": list(OCCURRING_CLASSES),
            "clips": clip_info,
        },
    )
    write_meta(out, meta, names)
    rendered = len(todo) * frames
    return BuildReport(
        out, clips, len(todo), frames, seconds, rendered / seconds if seconds > 0 else 0.0
    )


def _claim(out: Path, wanted: dict[str, Any]) -> None:
    """Use `out` only if it is new, empty, or an earlier build with the same settings."""
    settings_path = out / SETTINGS_FILE
    if out.exists() and any(out.iterdir()):
        if not settings_path.is_file():
            raise DataError(f"{out} is not empty and holds no earlier build; choose another --out")
        earlier = json.loads(settings_path.read_text())
        if earlier != wanted:
            changed = sorted(k for k in wanted if earlier.get(k) != wanted[k])
            raise DataError(
                f"{out} holds a build with different settings ({', '.join(changed)}); "
                "choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    settings_path.write_text(json.dumps(wanted, indent=2) + "\n")
