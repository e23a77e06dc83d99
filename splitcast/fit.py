"""`splitcast fit`: from a folder of clips to a deployable checkpoint and a report on clips
no choice ever saw.

The steps, each a part of splitcast that also runs on its own:
1. split the clips by clip into train, calibration and test parts (`split_by_clip`);
2. train: the stages of the default recipe that suit the data (`training_stages`), within a
   time budget when one is given;
3. package the result in float16, so the choices below are made on the weights that ship;
4. calibrate every combiner per age on the calibration clips, local-only always a candidate
   (`splitcast.calibrate`), and keep the combiner whose calibrated scores are best: on those
   clips the result is never worse than local-only at any age;
5. write the checkpoint (`OUT/checkpoint`) and score it against every baseline on the test
   clips (`splitcast.fit_report`), which were used for nothing before.

Every step records its completion in `OUT/fit.json`; the same command run again skips what is
done and resumes a stopped training stage from its last epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from splitcast.calibrate import CalibrationRequest, calibrate
from splitcast.data.clips import DataError, open_clips
from splitcast.data.sampling import valid_targets
from splitcast.data.splits import ClipSplit, split_by_clip, write_subset
from splitcast.files import write_json
from splitcast.fit_report import ReportRequest, write_report
from splitcast.fit_settings import COMBINERS, LARGE_DATA_CLIPS, FitRequest
from splitcast.models.checkpoint import (
    checkpoint_config,
    export_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from splitcast.models.devices import placement
from splitcast.models.registry import get_config, with_bottleneck
from splitcast.models.train_options import TrainOptions
from splitcast.models.training import STATE_FILE, train

STATE = "fit.json"


@dataclass(frozen=True)
class Stage:
    """One training run of the recipe: its name, share of the time budget, epochs without a
    budget and what it changes from the stage before."""

    name: str
    share: float
    epochs: int
    overrides: dict[str, Any] = field(default_factory=dict)
    forecast_warp: bool = False
    codec: bool = False


SMALL_DATA_EPOCHS = 8
RECIPE = (
    Stage("base", 0.3, 2),
    Stage("top", 0.45, 2, {"train_remote_top": True}),
    Stage(
        "warp",
        0.17,
        1,
        {"fused_dropout": 0.5, "lr": 1e-3, "warmup_steps": 50},
        forecast_warp=True,
    ),
    Stage("codec", 0.08, 1, {"rate_lambda": 1e-5, "train_only": "codec"}, codec=True),
)


def training_stages(train_clips: int) -> tuple[Stage, ...]:
    """The recipe's stages for this many training clips (see `LARGE_DATA_CLIPS`)."""
    if train_clips >= LARGE_DATA_CLIPS:
        return RECIPE
    return (Stage("base", 1.0, SMALL_DATA_EPOCHS),)


class Fit:
    """One fit's folder: its request, its progress record and its steps."""

    def __init__(self, request: FitRequest) -> None:
        placement(request.device, request.precision)  # a missing device fails before any step
        self.request = request
        self.out = request.out
        self.state_path = self.out / STATE
        self.state: dict[str, Any] = {"request": request.to_json(), "done": {}}
        if self.state_path.is_file():
            stored = json.loads(self.state_path.read_text())
            changed = sorted(
                key
                for key, value in self.state["request"].items()
                if stored["request"].get(key) != value
            )
            if changed:
                raise DataError(
                    f"{self.out} holds a fit with other settings ({', '.join(changed)}); "
                    "rerun it with the same ones to resume, or pick another --out"
                )
            self.state = stored

    def _done(self, step: str, record: Any) -> None:
        self.state["done"][step] = record
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.state_path, self.state)

    def _say(self, text: str) -> None:
        if self.request.progress:
            print(f"[fit] {text}", flush=True)

    def run(self) -> dict[str, Any]:
        split = self.split()
        trained = self.train(split)
        packaged = self.out / "packaged"
        if "package" not in self.state["done"]:
            version = export_checkpoint(trained, packaged, half=True)
            self._done("package", {"path": str(packaged), "version": version})
        chosen = self.calibrate(packaged)
        if "report" not in self.state["done"]:
            self._say(f"scoring on the {len(split.test)} test clips")
            report = write_report(
                ReportRequest(
                    self.out / "checkpoint",
                    self.out / "split" / "test",
                    self.out / "report",
                    max_delay=int(self.request.delays[1]),
                    calibration=chosen,
                    split=split.to_json(),
                    progress=self.request.progress,
                    device=self.request.device,
                    precision=self.request.precision,
                )
            )
            self._done("report", {"path": str(self.out / "report"), "summary": report["summary"]})
        self._say(f"checkpoint: {self.out / 'checkpoint'}; report: {self.out / 'report'}")
        return self.state

    def split(self) -> ClipSplit:
        """Cut `data` by clip, or take the given calibration and test folders whole; each part
        becomes a clip folder of links under OUT/split."""
        request = self.request
        sources = {"train": open_clips(request.data)}
        if request.calib_data is not None and request.test_data is not None:
            sources |= {
                "calib": open_clips(request.calib_data),
                "test": open_clips(request.test_data),
            }
        for part, dataset in sources.items():
            if dataset.meta.classes != sources["train"].meta.classes:
                raise DataError(
                    f"the {part} clips ({dataset.root}) have other classes than {request.data}"
                )
        if "split" in self.state["done"]:
            split = ClipSplit.from_json(self.state["done"]["split"])
        elif len(sources) == 3:
            names = {part: tuple(c.name for c in d.clips) for part, d in sources.items()}
            split = ClipSplit(request.seed, names["train"], names["calib"], names["test"])
        else:
            split = split_by_clip(
                [clip.name for clip in sources["train"].clips],
                request.calib_fraction,
                request.test_fraction,
                request.seed,
            )
        context = get_config(request.config).context_frames
        for part in ("train", "calib", "test"):
            dataset = sources.get(part, sources["train"])
            subset = write_subset(dataset, getattr(split, part), self.out / "split" / part)
            if not any(valid_targets(c, request.delays[1], context, 1) for c in subset.clips):
                raise DataError(
                    f"no {part} clip has a labelled frame with {request.delays[1]:g} + "
                    f"{context - 1} frames before it, as answers up to {request.delays[1]:g} "
                    "ticks old need: import longer clips (--clip-len) or lower --delays"
                )
        if "split" not in self.state["done"]:
            self._done("split", split.to_json())
        how = "as given" if len(sources) == 3 else f"by clip (seed {split.seed})"
        self._say(
            f"clips split {how}: {len(split.train)} train, {len(split.calib)} calibration, "
            f"{len(split.test)} test"
        )
        return split

    def train(self, split: ClipSplit) -> Path:
        """Run the stages not yet done; returns the last stage's checkpoint folder."""
        stages = training_stages(len(split.train))
        previous: Path | None = None
        for number, stage in enumerate(stages, start=1):
            folder = self.out / "train" / stage.name
            key = f"train/{stage.name}"
            if key not in self.state["done"]:
                self._say(f"training stage {number}/{len(stages)}: {stage.name}")
                result = train(self._options(stage, folder, previous))
                self._done(key, {"steps": result["steps"], "seconds": result["seconds"]})
            previous = folder
        assert previous is not None
        return previous

    def _options(self, stage: Stage, folder: Path, previous: Path | None) -> TrainOptions:
        request = self.request
        config = get_config(request.config) if previous is None else checkpoint_config(previous)
        if stage.forecast_warp:
            config = config.with_network(forecast_warp=True)
        if stage.codec:
            config = with_bottleneck(config, width=16, stride=2)
        budget = request.time_budget_min
        options = TrainOptions(
            config=config,
            data=self.out / "split" / "train",
            out=folder,
            epochs=stage.epochs if budget is None else 1000,
            batch_size=request.batch_size,
            delays=request.delays,
            cache_dir=self.out / "cache",
            workers=request.workers,
            seed=request.seed,
            max_steps=request.max_steps,
            time_budget_s=None if budget is None else budget * 60 * stage.share,
            resume=(folder / STATE_FILE).is_file(),
            progress=request.progress,
            init=None if previous is None else str(previous),
            device=request.device,
            precision=request.precision,
        )
        return replace(options, **stage.overrides)

    def calibrate(self, packaged: Path) -> dict[str, Any]:
        """Calibrate each combiner in turn (each copy keeps the policies before it), then
        write the checkpoint with the combiner whose chosen settings score best on average."""
        request = self.request
        source = packaged
        scores: dict[str, float] = {}
        for name in COMBINERS:
            folder = self.out / "calibrate" / name
            key = f"calibrate/{name}"
            if key not in self.state["done"]:
                self._say(f"calibrating {name} per age on the calibration clips")
                late = name == "late_average"
                result = calibrate(
                    CalibrationRequest(
                        checkpoint=str(source),
                        data=self.out / "split" / "calib",
                        out=folder,
                        max_delay=int(request.delays[1]),
                        combiner=name,
                        weights=list(request.late_weights) if late else None,
                        blurs=list(request.late_blurs) if late else None,
                        moved_weights=list(request.late_moved_weights) if late else None,
                        every=request.every,
                        confidence=request.confidence,
                        progress=request.progress,
                        device=request.device,
                        precision=request.precision,
                    )
                )
                self._done(key, {"mean": chosen_mean(result), "path": str(folder)})
            scores[name] = self.state["done"][key]["mean"]
            source = folder / "checkpoint"
        best = max(scores, key=scores.__getitem__)
        if "checkpoint" not in self.state["done"]:
            system, meta = load_checkpoint(source)
            if system.config.combiner != best:
                system = system.with_combiner(best)
            record = {k: v for k, v in meta.items() if k not in ("config", "packaged_prefixes")}
            record["fit"] = {"split": self.state["done"]["split"], "calibration_means": scores}
            version = save_checkpoint(system, self.out / "checkpoint", record, half=True)
            self._done("checkpoint", {"combiner": best, "version": version})
            self._say(f"kept {best} (mean calibrated mIoU per age: {scores})")
        chosen = json.loads((self.out / "calibrate" / best / "calibration.json").read_text())
        return {"combiner": best, "means": scores, "choices": chosen["choices"]}


def chosen_mean(calibration: dict[str, Any]) -> float:
    """Mean over ages of the chosen candidate's score on the calibration clips."""
    candidates = calibration["candidates"]
    rows = calibration["gain_grid"]
    values = [
        row[candidates.index(chosen)]
        for row, chosen in zip(rows, calibration["chosen"], strict=True)
    ]
    return round(sum(values) / len(values), 3)


def fit(request: FitRequest) -> dict[str, Any]:
    """Run (or resume) a fit; returns its progress record (also in `OUT/fit.json`)."""
    return Fit(request).run()
