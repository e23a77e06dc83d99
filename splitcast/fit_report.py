"""The report of a fit: what the cloud bought on clips that no choice ever saw.

Scores the fitted checkpoint and the baselines (local-only, the stale remote, the remote's
forecast, the oracle) at every delay on the test clips, with the fitted checkpoint's gain
over local-only and a 95 % interval from resampling whole test clips, and says per range of
delays whether the cloud helps there. Written as report.json, report.csv, report.png and
report.md.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from splitcast.data.clips import open_clips
from splitcast.data.metrics import Gain
from splitcast.files import write_json
from splitcast.models.answers import LOCAL_ONLY
from splitcast.models.checkpoint import load_checkpoint
from splitcast.models.codec import get_codec
from splitcast.models.devices import placement
from splitcast.models.evaluation import OfflineEvaluator
from splitcast.models.score_tables import gains_over_local_only
from splitcast.reports import STYLES

REPORTED = {
    "fitted": "dedelayed",
    "local_only": "local_only",
    "stale_remote": "remote_stale_image",
    "remote_forecast": "remote_predictive",
    "oracle": "oracle",
}
"""Report column -> the evaluator's method name."""

VERDICTS = {
    "helps": "the cloud helps here",
    "local_only": "the checkpoint runs local-only here: on the calibration clips no use of the "
    "cloud's answer beat local-only reliably",
    "unclear": "no clear difference from local-only (the interval spans zero)",
    "hurts": "the fitted checkpoint is below local-only here",
}


@dataclass
class ReportRequest:
    checkpoint: Path
    data: Path
    out: Path
    max_delay: int | None = None
    """The last age scored (None: the checkpoint's answer horizon)."""
    calibration: dict[str, Any] | None = None
    """The fit's calibration summary (combiner, per-combiner means, per-age choices)."""
    split: dict[str, Any] | None = None
    progress: bool = True
    device: str = "auto"
    precision: str | None = None


def verdict(gain: Gain, runs_local_only: bool) -> str:
    if runs_local_only:
        return "local_only"
    if gain.low > 0:
        return "helps"
    if gain.high < 0:
        return "hurts"
    return "unclear"


def write_report(request: ReportRequest) -> dict[str, Any]:
    """Score, write the four files into `request.out`, return the JSON's content."""
    system, _ = load_checkpoint(request.checkpoint)
    dataset = open_clips(request.data)
    device, precision = placement(request.device, request.precision)
    codec = get_codec(system.config.codec, system.bottleneck)
    evaluator = OfflineEvaluator(system, dataset, codec=codec, device=device, precision=precision)
    last = system.config.horizon_ticks if request.max_delay is None else request.max_delay
    delays = [float(d) for d in range(last + 1)]
    scores = evaluator.run(delays, progress=request.progress)
    clips = list(evaluator.clip_matrices.values())
    gains = gains_over_local_only(clips, len(delays))
    combiner = system.combiner()
    rows = []
    for column, (delay, gain) in enumerate(zip(delays, gains, strict=True)):
        runs_local = combiner.use_at(delay) == LOCAL_ONLY
        rows.append(
            {
                "delay_ticks": delay,
                "delay_ms": round(delay * 1000 / dataset.meta.fps, 1),
                **{name: scores["miou"][method][column] for name, method in REPORTED.items()},
                "gain": gain.to_json(),
                "verdict": verdict(gain, runs_local),
            }
        )
    report = {
        "checkpoint": {"path": str(request.checkpoint), "version": system.config.version},
        "combiner": system.config.combiner,
        "test_data": str(request.data),
        "test_clips": len(clips),
        "target_frames": scores["targets"],
        "fps": dataset.meta.fps,
        "split": request.split,
        "calibration": request.calibration,
        "rows": rows,
        "summary": summary(rows),
    }
    request.out.mkdir(parents=True, exist_ok=True)
    write_json(request.out / "report.json", report)
    _write_csv(request.out / "report.csv", rows)
    _plot(request.out / "report.png", rows, report)
    (request.out / "report.md").write_text(markdown(report))
    return report


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """One plain sentence per run of consecutive delays with the same verdict."""
    sentences = []
    start = 0
    for end in range(1, len(rows) + 1):
        if end < len(rows) and rows[end]["verdict"] == rows[start]["verdict"]:
            continue
        part = rows[start:end]
        low, high = part[0], part[-1]
        span = (
            f"{low['delay_ticks']:g} ticks ({low['delay_ms']:g} ms)"
            if len(part) == 1
            else f"{low['delay_ticks']:g}-{high['delay_ticks']:g} ticks "
            f"({low['delay_ms']:g}-{high['delay_ms']:g} ms)"
        )
        gains = [row["gain"]["gain"] for row in part]
        bounds = [row["gain"]["low"] for row in part] + [row["gain"]["high"] for row in part]
        sentences.append(
            f"At {span}: {VERDICTS[low['verdict']]} (gain over local-only "
            f"{min(gains):+.2f} to {max(gains):+.2f} mIoU, 95 % intervals within "
            f"[{min(bounds):+.2f}, {max(bounds):+.2f}])."
            if low["verdict"] != "local_only"
            else f"At {span}: {VERDICTS['local_only']} (gain 0 by construction)."
        )
        start = end
    return sentences


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["delay_ticks", "delay_ms", *REPORTED, "gain", "gain_low", "gain_high", "verdict"]
        )
        for row in rows:
            gain = row["gain"]
            writer.writerow(
                [
                    row["delay_ticks"],
                    row["delay_ms"],
                    *(row[name] for name in REPORTED),
                    *(gain[k] for k in ("gain", "low", "high")),
                    row["verdict"],
                ]
            )


def _plot(path: Path, rows: list[dict[str, Any]], report: dict[str, Any]) -> None:
    figure, (scores, gains) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True)
    ms = [row["delay_ms"] for row in rows]
    for name, method in REPORTED.items():
        colour, line, marker = STYLES[method]
        values = [row[name] for row in rows]
        scores.plot(ms, values, color=colour, linestyle=line, marker=marker, label=name)
    scores.set_ylabel("mIoU (%)")
    scores.set_title(
        f"fitted checkpoint ({report['combiner']}) on {report['test_clips']} test clips",
        fontsize=10,
    )
    scores.grid(alpha=0.3)
    scores.legend(fontsize=8)
    gain = [row["gain"]["gain"] for row in rows]
    gains.fill_between(
        ms,
        [row["gain"]["low"] for row in rows],
        [row["gain"]["high"] for row in rows],
        color="tab:red",
        alpha=0.2,
        label="95 % interval over test clips",
    )
    gains.plot(ms, gain, color="tab:red", marker="o", label="fitted - local_only")
    gains.axhline(0, color="tab:green", linestyle=":")
    gains.set_ylabel("gain over local-only (mIoU)")
    gains.set_xlabel("delay (ms)")
    gains.set_xticks(ms)
    gains.set_xticklabels(
        [f"{row['delay_ms']:g}\n({row['delay_ticks']:g})" for row in rows], fontsize=7
    )
    gains.grid(alpha=0.3)
    gains.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def markdown(report: dict[str, Any]) -> str:
    """A short page: what was scored, the verdicts, the table."""
    split = report["split"] or {}
    lines = [
        "# What the cloud bought",
        "",
        f"Checkpoint `{report['checkpoint']['path']}` (version "
        f"{report['checkpoint']['version']}, combiner {report['combiner']}) scored on "
        f"{report['test_clips']} test clips ({report['target_frames']} target frames at "
        f"{report['fps']:g} fps) that were used for no choice: not for training, not for "
        "calibration, not for choosing the combiner.",
    ]
    if split:
        lines += [
            "",
            f"Split by clip with seed {split['seed']}: {len(split['train'])} train, "
            f"{len(split['calib'])} calibration, {len(split['test'])} test clips.",
        ]
    lines += ["", *(f"- {sentence}" for sentence in report["summary"]), ""]
    lines += [
        "| delay (ticks / ms) | fitted | local-only | gain [95 % interval] | stale remote "
        "| remote forecast | oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        gain = row["gain"]
        lines.append(
            f"| {row['delay_ticks']:g} / {row['delay_ms']:g} | {row['fitted']:.2f} | "
            f"{row['local_only']:.2f} | {gain['gain']:+.2f} [{gain['low']:+.2f}, "
            f"{gain['high']:+.2f}] | {row['stale_remote']:.2f} | {row['remote_forecast']:.2f} | "
            f"{row['oracle']:.2f} |"
        )
    calibration = report["calibration"]
    if calibration:
        fallbacks = [
            age
            for age, choice in enumerate(calibration["choices"])
            if choice["fell_back_to_local_only"]
        ]
        lines += [
            "",
            "Combiners' mean calibrated mIoU over ages on the calibration clips: "
            + ", ".join(f"{k} {v:.2f}" for k, v in calibration["means"].items())
            + f"; kept {calibration['combiner']}.",
        ]
        if fallbacks:
            lines.append(
                "At ages "
                + ", ".join(str(a) for a in fallbacks)
                + " the best use of the answer led local-only on the calibration clips, but "
                "not reliably (in too few resamples of those clips), so the checkpoint runs "
                "local-only there: the safe answer with little data."
            )
    return "\n".join(lines) + "\n"
