"""Result files of an evaluation: results.json, results.csv and PNG plots."""

from __future__ import annotations

import csv
import json
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


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


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
