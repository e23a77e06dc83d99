"""`splitcast calibrate`: choose per age of an answer how the edge combines it, on held-out clips.

A model trained on a few scenes trusts a late forecast more than it deserves on new ones.
Calibration scores Dedelayed on held-out clips (the `calib` split by default, never the
training clips) at each delay with each candidate record of the combiner (a gain for feature
fusion; a weight, blur and moved-answer weight for the late average: the combiner says what
it tries), keeps the best per delay and writes a copy of the checkpoint whose configuration
carries them as its per-age policy (applied by the edge to the measured age D_o, and by
`evaluate`). A weight of 0 is local-only, so on those clips the choice is never worse than
local-only at any age; and a candidate that beats local-only there is only kept when it does
so in most resamples of the calibration clips (`confidence`), since a lead that rests on one
or two clips is noise that new footage will not repeat. The copy keeps the weights' version:
the networks a server must agree on are unchanged. Selecting on a split that is neither
trained on nor reported keeps the reported figures honest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from splitcast.data.clips import ClipDataset, open_clips
from splitcast.data.metrics import Gain, bootstrap_gain
from splitcast.files import write_json
from splitcast.models.answers import LOCAL_ONLY, AnswerUse, check_uses
from splitcast.models.checkpoint import load_checkpoint, save_checkpoint, stored_in_half
from splitcast.models.codec import get_codec
from splitcast.models.devices import placement
from splitcast.models.evaluation import OfflineEvaluator
from splitcast.reports import plot_gain_calibration

MAX_PLOTTED_CANDIDATES = 8  # above this the plot groups candidates by their moved-answer weight


class CalibrationError(ValueError):
    """A calibration that would not mean anything (e.g. on the training clips)."""


@dataclass
class CalibrationRequest:
    """What to calibrate; the defaults calibrate the shipped checkpoint on the `calib` split."""

    checkpoint: str = "default"
    data: Path = Path("out/data/calib")
    out: Path = Path("out/calib")
    max_delay: int | None = None
    """The last age calibrated, and the copy's answer horizon (None: the checkpoint's)."""
    from_age: int = 0
    """Choose records from this age on, keeping the checkpoint's own for younger ages: a
    calibrated checkpoint's horizon lengthened without choosing its calibrated ages again."""
    combiner: str | None = None
    """The combiner to calibrate and switch the copy to (default: the checkpoint's)."""
    weights: list[float] | None = None
    """Gains or forecast weights tried per age (default: the combiner's)."""
    blurs: list[int] | None = None
    """Late average: box sides tried with every weight (default: the combiner's)."""
    moved_weights: list[float] | None = None
    """Late average: weights of the moved on-time answer (default: the combiner's)."""
    every: int = 3
    confidence: float = 0.9
    """Keep a candidate other than local-only at an age only if it beats local-only in at least
    this fraction of bootstrap resamples of the calibration clips (0: the best score wins)."""
    progress: bool = True
    device: str = "auto"
    """Where the networks run, and in what precision (`splitcast.models.devices`)."""
    precision: str | None = None


def calibrate(request: CalibrationRequest) -> dict[str, Any]:
    """Score every (delay, candidate) pair, write calibration.json, gain_calibration.png and
    the calibrated checkpoint (`out/checkpoint`); returns the JSON's content."""
    dataset = open_clips(request.data)
    system, meta = load_checkpoint(request.checkpoint)
    _check_held_out(dataset, meta, request.data)
    if request.combiner not in (None, system.config.combiner):
        system = system.with_combiner(request.combiner)
    combiner = system.combiner()
    candidates = combiner.candidates(request.weights, request.blurs, request.moved_weights)
    check_uses(candidates)
    candidates = [LOCAL_ONLY, *(c for c in candidates if c != LOCAL_ONLY)]
    name = combiner.name
    codec = get_codec(system.config.codec, system.bottleneck)
    horizon = system.config.horizon_ticks if request.max_delay is None else request.max_delay
    kept = _kept_records(combiner.policy, request.from_age, horizon, request.checkpoint)
    delays = [float(d) for d in range(request.from_age, horizon + 1)]
    device, precision = placement(request.device, request.precision)
    evaluator = OfflineEvaluator(system, dataset, codec=codec, device=device, precision=precision)
    scores = evaluator.run(delays, every=request.every, gains=candidates, progress=request.progress)
    grid = scores["gain_grid"]
    choices = [
        safe_choice(evaluator, row, candidates, request.confidence) for row in range(len(delays))
    ]
    chosen = [*kept, *(choice.use for choice in choices)]
    config = replace(system.config.with_policy(name, chosen), horizon_ticks=horizon)
    calibrated = replace(system, config=config)
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
        "combiner": name,
        "delays": delays,
        "horizon_ticks": horizon,
        "kept_from_checkpoint": [use_record(c) for c in kept],
        "candidates": [use_record(c) for c in candidates],
        "gain_grid": grid,
        "local_only": scores["miou"]["local_only"][0],
        "confidence": request.confidence,
        "chosen": [use_record(c) for c in chosen],
        "choices": [choice.to_json() for choice in choices],
    }
    request.out.mkdir(parents=True, exist_ok=True)
    write_json(request.out / "calibration.json", result)
    plot_gain_calibration(
        request.out / "gain_calibration.png",
        delays,
        plotted_lines(candidates, grid),
        result["local_only"],
    )
    return result


@dataclass(frozen=True)
class Choice:
    """What calibration settled on at one age, and why."""

    use: AnswerUse
    best: AnswerUse
    """The best-scoring candidate on the calibration clips (local-only on a tie)."""
    gain: Gain
    """`best`'s mIoU minus local-only's on those clips, with its interval over clips."""

    def to_json(self) -> dict[str, Any]:
        return {
            "use": use_record(self.use),
            "best": use_record(self.best),
            "best_gain_over_local_only": self.gain.to_json(),
            "fell_back_to_local_only": self.use != self.best,
        }


def safe_choice(
    evaluator: OfflineEvaluator, row: int, candidates: list[AnswerUse], confidence: float
) -> Choice:
    """The best candidate at delay row `row` of the evaluator's last `run` (unrounded scores,
    the first candidate on a tie), or local-only when the best beats local-only in fewer than
    `confidence` of the bootstrap resamples of the clips."""
    assert evaluator.matrices is not None
    scores = [cell.miou() for cell in evaluator.matrices.gain_grid[row]]
    best = max(range(len(candidates)), key=lambda i: (scores[i], -i))
    clips = list(evaluator.clip_matrices.values())
    gain = bootstrap_gain(
        np.stack([clip.gain_grid[row][best].counts for clip in clips]),
        np.stack([clip.fixed["local_only"].counts for clip in clips]),
    )
    sure = candidates[best] == LOCAL_ONLY or gain.above_zero >= confidence
    return Choice(candidates[best] if sure else LOCAL_ONLY, candidates[best], gain)


def use_record(use: AnswerUse) -> dict[str, float]:
    return {"weight": use.weight, "blur": use.blur, "warped_weight": use.warped_weight}


def plotted_lines(candidates: list[AnswerUse], grid: list[list[float]]) -> dict[str, list[float]]:
    """What the calibration plot draws: each candidate's scores per age; with more candidates
    than can be told apart, the best over weights and blurs for each moved-answer weight."""
    if len(candidates) <= MAX_PLOTTED_CANDIDATES:
        return {candidate_label(c): [row[i] for row in grid] for i, c in enumerate(candidates)}
    groups: dict[float, list[int]] = {}
    for i, candidate in enumerate(candidates):
        groups.setdefault(candidate.warped_weight, []).append(i)
    return {
        f"moved answer v {v:g}, best w and k": [max(row[i] for i in columns) for row in grid]
        for v, columns in groups.items()
    }


def candidate_label(use: AnswerUse) -> str:
    """How tables and plots name a candidate: `w 0.5`, or `w 0.6 k 7 v 0.2` (weight, blur,
    moved-answer weight) when it blurs or moves."""
    if use.blur == 1 and not use.warped_weight:
        return f"w {use.weight:g}"
    return f"w {use.weight:g} k {use.blur} v {use.warped_weight:g}"


def _kept_records(
    policy: tuple[AnswerUse, ...], from_age: int, horizon: int, checkpoint: str
) -> list[AnswerUse]:
    """The checkpoint's records for the ages below `from_age`, which must all exist."""
    if from_age > horizon:
        raise CalibrationError(
            f"--from-age {from_age} is past the last age to calibrate, {horizon}"
        )
    if from_age > len(policy):
        raise CalibrationError(
            f"{checkpoint} has records for {len(policy)} ages; --from-age {from_age} would leave "
            f"ages {len(policy)}..{from_age - 1} without one"
        )
    return list(policy[:from_age])


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
