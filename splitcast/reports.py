"""Result files of an evaluation: results.json, results.csv and PNG plots."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLES = {
    "dedelayed": ("tab:red", "-", "o"),
    "remote_predictive": ("tab:orange", "-", "s"),
    "remote_stale_video": ("tab:purple", "--", "^"),
    "remote_stale_image": ("tab:blue", "--", "v"),
    "local_only": ("tab:green", ":", None),
    "oracle": ("grey", ":", None),
}


def write_csv(
    path: Path, delays: list[float], rtt_ms: list[float], miou: dict[str, list[float]]
) -> None:
    """One row per delay: d (ticks), ms, then one column per method."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["delay_ticks", "delay_ms", *miou])
        for index, delay in enumerate(delays):
            writer.writerow(
                [delay, round(rtt_ms[index], 1), *(values[index] for values in miou.values())]
            )


def plot_miou_vs_delay(
    path: Path, rtt_ms: list[float], delays: list[float], miou: dict[str, list[float]], title: str
) -> None:
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for method, values in miou.items():
        colour, line, marker = STYLES.get(method, ("black", "-", None))
        axis.plot(
            rtt_ms, values, color=colour, linestyle=line, marker=marker, markersize=4, label=method
        )
    axis.set_xlabel("delay (ms)")
    axis.set_ylabel("mIoU (%)")
    axis.set_xticks(rtt_ms)
    axis.set_xticklabels(
        [f"{ms:.0f}\n({d:g})" for ms, d in zip(rtt_ms, delays, strict=True)], fontsize=7
    )
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def plot_mismatch(path: Path, delays: list[float], matrix: list[list[float]]) -> None:
    figure, axis = plt.subplots(figsize=(6, 5))
    image = axis.imshow(matrix, origin="lower", cmap="viridis")
    axis.set_xticks(range(len(delays)), [f"{d:g}" for d in delays])
    axis.set_yticks(range(len(delays)), [f"{d:g}" for d in delays])
    axis.set_xlabel("assumed delay D_i (ticks)")
    axis.set_ylabel("true delay D_o (ticks)")
    for row, values in enumerate(matrix):
        for column, value in enumerate(values):
            axis.text(
                column, row, f"{value:.0f}", ha="center", va="center", fontsize=6, color="white"
            )
    figure.colorbar(image, label="Dedelayed mIoU (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def plot_rate_accuracy(path: Path, rate: dict[str, Any]) -> None:
    """Dedelayed mIoU at the rate delay against downlink kbit/s: learned-codec checkpoints as a
    curve, int8-zstd as a point, raw-fp16 and local-only as reference lines."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    learned = rate["learned"]
    if learned:
        axis.plot(
            [p["downlink_kbps"] for p in learned],
            [p["dedelayed"] for p in learned],
            color="tab:red",
            marker="o",
            label="learned",
        )
        for index, point in enumerate(learned):
            lam = point["rate_lambda"]
            axis.annotate(
                f"λ={lam:g}, w={point['width']}" if lam is not None else point["checkpoint"],
                (point["downlink_kbps"], point["dedelayed"]),
                fontsize=7,
                rotation=30,
                textcoords="offset points",
                xytext=(4, 6 if index % 2 else -14),
            )
    int8 = rate["references"]["int8-zstd"]
    axis.scatter(
        [int8["downlink_kbps"]], [int8["dedelayed"]], color="tab:purple", label="int8-zstd"
    )
    raw = rate["references"]["raw-fp16"]
    axis.axhline(
        raw["dedelayed"],
        color="black",
        linestyle="--",
        label=f"raw-fp16 ({raw['downlink_kbps'] / 1000:.1f} Mbit/s)",
    )
    axis.axhline(rate["local_only"], color="tab:green", linestyle=":", label="local_only")
    axis.set_xscale("log")
    axis.set_xlabel("downlink kbit/s at the data's frame rate (log)")
    axis.set_ylabel(f"Dedelayed mIoU at d = {rate['delay_ticks']:g} (%)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def plot_gain_calibration(
    path: Path,
    delays: list[float],
    lines: dict[str, list[float]],
    local_only: float,
) -> None:
    """Dedelayed mIoU versus delay, one line per entry of `lines` (a downlink gain, or the
    best of a group of late-average candidates), with local-only for scale."""
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    colours = plt.get_cmap("viridis")
    for number, (label, values) in enumerate(lines.items()):
        colour = colours(number / max(len(lines) - 1, 1))
        axis.plot(delays, values, color=colour, marker="o", markersize=3, label=label)
    axis.axhline(local_only, color="tab:green", linestyle=":", label="local_only")
    axis.set_xlabel("age of the answer D_o (ticks)")
    axis.set_ylabel("Dedelayed mIoU (%)")
    axis.set_xticks(delays)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=1 + len(lines) // 10)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)
