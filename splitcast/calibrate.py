"""`splitcast calibrate`: choose how much of the downlink the edge adds, per age of the features.

A model trained on a few scenes trusts a late forecast more than it deserves on new ones: on
held-out clips, the default checkpoint scored higher at long delays with its downlink halved
than as trained. Calibration scores Dedelayed on held-out clips (the `calib` split by default,
never the training clips) at each delay with each candidate gain, keeps the best gain per delay
and writes a copy of the checkpoint whose configuration carries those gains
(`params.downlink_gain`, applied by the edge to the measured age D_o and by `evaluate`). The
copy keeps the weights' version: the networks a server must agree on are unchanged.
Selecting on a split that is neither trained on nor reported keeps the reported figures honest.

With `late_average` the copy switches the edge to the late average instead
(`splitcast.models.downlink`): the candidates are triples of a weight of the forecast's class
log-probabilities, a blur of its probabilities and a weight of the on-time answer moved to
the current frame, chosen per age (`params.late_weight`, `params.late_blur`,
`params.late_warped_weight`), and the server then sends those log-probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from splitcast.data.clips import ClipDataset, open_clips
from splitcast.models.checkpoint import load_checkpoint, save_checkpoint, stored_in_half
from splitcast.models.codec import get_codec
from splitcast.models.codec_names import DEFAULT_LATE_BLURS, DEFAULT_LATE_WARPED_WEIGHTS
from splitcast.models.downlink import (
    AnswerUse,
    check_late_uses,
    is_late_average,
    with_late_average,
)
from splitcast.models.evaluation import OfflineEvaluator
from splitcast.models.registry import ModelConfig, check_downlink_gains, with_downlink_gain
from splitcast.reports import plot_gain_calibration, write_json

DEFAULT_GAINS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
DEFAULT_LATE_WEIGHTS = (0.3, 0.4, 0.5, 0.6)


class CalibrationError(ValueError):
    """A calibration that would not mean anything (e.g. on the training clips)."""


@dataclass
class CalibrationRequest:
    """What to calibrate; the defaults calibrate the shipped checkpoint on the `calib` split."""

    checkpoint: str = "default"
    data: Path = Path("out/data/calib")
    out: Path = Path("out/calib")
    max_delay: int = 10
    gains: list[float] | None = None
    """Candidates per age (default: `DEFAULT_GAINS`, or `DEFAULT_LATE_WEIGHTS`)."""
    every: int = 3
    progress: bool = True
    late_average: bool = False
    late_blurs: list[int] | None = None
    """Late average only: box sides tried with every weight (default: `DEFAULT_LATE_BLURS`)."""
    late_warped_weights: list[float] | None = None
    """Late average only: weights of the moved on-time answer tried with every other pair
    (default: `DEFAULT_LATE_WARPED_WEIGHTS`)."""

    def candidates(self) -> list[AnswerUse]:
        if not self.late_average:
            gains = self.gains if self.gains is not None else DEFAULT_GAINS
            return [AnswerUse(float(g)) for g in gains]
        weights = self.gains if self.gains is not None else DEFAULT_LATE_WEIGHTS
        blurs = self.late_blurs if self.late_blurs is not None else DEFAULT_LATE_BLURS
        warped = self.late_warped_weights
        warped = warped if warped is not None else DEFAULT_LATE_WARPED_WEIGHTS
        return [
            AnswerUse(float(w), int(k), float(v)) for v in warped for k in blurs for w in weights
        ]


def calibrate(request: CalibrationRequest) -> dict[str, Any]:
    """Score every (delay, candidate) pair, write calibration.json, gain_calibration.png and
    the calibrated checkpoint (`out/checkpoint`); returns the JSON's content."""
    candidates = request.candidates()
    late = request.late_average
    if late:
        check_late_uses(candidates)
    else:
        check_downlink_gains([c.weight for c in candidates])

    def configure(config: ModelConfig, uses: list[AnswerUse]) -> ModelConfig:
        if late:
            return with_late_average(config, uses)
        return with_downlink_gain(config, [u.weight for u in uses])

    dataset = open_clips(request.data)
    system, meta = load_checkpoint(request.checkpoint)
    _check_held_out(dataset, meta, request.data)
    before = system.config
    if is_late_average(before) and not late:
        raise CalibrationError(
            f"{request.checkpoint} averages late; calibrate its weights with --late-average"
        )
    system = replace(system, config=configure(before, candidates[:1]))
    codec = get_codec(system.config.codec, system.bottleneck)
    delays = [float(d) for d in range(request.max_delay + 1)]
    evaluator = OfflineEvaluator(system, dataset, codec=codec)
    scores = evaluator.run(delays, every=request.every, gains=candidates, progress=request.progress)
    grid = scores["gain_grid"]
    chosen = [candidates[row.index(max(row))] for row in grid]
    calibrated = replace(system, config=configure(before, chosen))
    folder = request.out / "checkpoint"
    record = {k: v for k, v in meta.items() if k not in ("config", "packaged_prefixes")}
    record["calibrated_from"] = {
        "checkpoint": request.checkpoint,
        "version": system.config.version,
        "data": str(request.data),
    }
    version = save_checkpoint(calibrated, folder, record, half=stored_in_half(request.checkpoint))
    result = {
        "checkpoint": {"name": request.checkpoint, "version": system.config.version},
        "calibrated_checkpoint": {"path": str(folder), "version": version},
        "data": str(request.data),
        "targets": scores["targets"],
        "every": request.every,
        "mode": "late-average" if late else "feature gain",
        "delays": delays,
        "gains": [c.weight for c in candidates],
        "blurs": [c.blur for c in candidates] if late else None,
        "warped_weights": [c.warped_weight for c in candidates] if late else None,
        "gain_grid": grid,
        "local_only": scores["miou"]["local_only"][0],
        "chosen_gains": [c.weight for c in chosen],
        "chosen_blurs": [c.blur for c in chosen] if late else None,
        "chosen_warped_weights": [c.warped_weight for c in chosen] if late else None,
    }
    request.out.mkdir(parents=True, exist_ok=True)
    write_json(request.out / "calibration.json", result)
    plot_gain_calibration(
        request.out / "gain_calibration.png",
        delays,
        plotted_lines(candidates, grid, late),
        result["local_only"],
    )
    return result


def plotted_lines(
    candidates: list[AnswerUse], grid: list[list[float]], late_average: bool
) -> dict[str, list[float]]:
    """What the calibration plot draws: each gain's scores per age; for the late average,
    the best over weights and blurs for each weight of the moved answer (too many candidates
    to draw one by one)."""
    if not late_average:
        return {
            candidate_label(c, late_average): [row[i] for row in grid]
            for i, c in enumerate(candidates)
        }
    groups: dict[float, list[int]] = {}
    for i, candidate in enumerate(candidates):
        groups.setdefault(candidate.warped_weight, []).append(i)
    return {
        f"moved answer v {v:g}, best w and k": [max(row[i] for i in columns) for row in grid]
        for v, columns in groups.items()
    }


def candidate_label(use: AnswerUse, late_average: bool) -> str:
    """How tables and plots name a candidate: `gain 0.5`, or `w 0.6 k 7 v 0.2` (weight, blur,
    warped weight)."""
    if not late_average:
        return f"gain {use.weight:g}"
    return f"w {use.weight:g} k {use.blur} v {use.warped_weight:g}"


def _check_held_out(dataset: ClipDataset, meta: dict[str, Any], path: Path) -> None:
    """Refuse clips the checkpoint was trained on (same scene seeds): gains chosen there
    would reward trusting the remote as much as training did."""
    trained = meta.get("data", {}).get("meta", {}).get("info", {}).get("clips", {})
    here = dataset.meta.info.get("clips", {})
    seeds = {c.get("seed") for c in trained.values()} & {c.get("seed") for c in here.values()}
    if seeds - {None}:
        raise CalibrationError(
            f"{path} shares {len(seeds - {None})} clips with the checkpoint's training data; "
            "calibrate on held-out clips, e.g. `splitcast data build --split calib`"
        )
