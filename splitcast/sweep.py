"""`splitcast sweep`: live evaluation through server, relay and edge at several round trips,
one table and one plot.

For each RTT the whole path runs in real time (see `splitcast.live_eval`); the edge's actual
outputs give the Dedelayed figure, and its decisions replayed offline give local-only and the
stale remote answer on exactly the same frames.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from splitcast.files import write_json
from splitcast.live_eval import LiveRequest, evaluate_live
from splitcast.reports import STYLES

COLUMNS = (
    "rtt_ms",
    "answer_age_ms_p50",
    "d_o_median",
    "combined_fraction",
    "dedelayed",
    "local_only",
    "remote_stale",
    "edge_p50_ms",
    "edge_p99_ms",
    "uplink_kbps",
    "downlink_kbps",
)


@dataclass
class SweepRequest:
    rtt_ms: list[float]
    live: LiveRequest = field(default_factory=LiveRequest)
    profile: str | None = None


def run_sweep(request: SweepRequest) -> list[dict[str, Any]]:
    """One live evaluation per RTT; writes sweep.json, sweep.csv and sweep.png to live.out."""
    out = request.live.out
    rows = []
    for rtt in request.rtt_ms:
        live = replace(
            request.live,
            rtt_ms=rtt,
            out=out / f"rtt-{rtt:g}",
            link_args=["--profile", request.profile] if request.profile else [],
        )
        result = evaluate_live(live)
        latency = result["latency_ms"]
        age = result["answer_age_ms_p50"]
        rows.append(
            {
                "rtt_ms": rtt,
                "answer_age_ms_p50": None if age is None else round(age, 1),
                "d_o_median": result["d_o_median"],
                "combined_fraction": result["combined_fraction"],
                "dedelayed": result["live_miou"],
                "local_only": result["offline_local_only_miou"],
                "remote_stale": result["offline_remote_stale_miou"],
                "edge_p50_ms": round(latency["all_p50"], 1),
                "edge_p99_ms": round(latency["all_p99"], 1),
                "uplink_kbps": result["uplink_kbps"],
                "downlink_kbps": result["downlink_kbps"],
            }
        )
    write_json(out / "sweep.json", {"profile": request.profile, "rows": rows})
    with (out / "sweep.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _plot(out / "sweep.png", rows, request.profile)
    return rows


def _plot(path: Path, rows: list[dict[str, Any]], profile: str | None) -> None:
    age = [row["answer_age_ms_p50"] or row["rtt_ms"] for row in rows]
    figure, (accuracy, cost) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, style in (
        ("dedelayed", "dedelayed"),
        ("local_only", "local_only"),
        ("remote_stale", "remote_stale_image"),
    ):
        colour, line, marker = STYLES[style]
        accuracy.plot(
            age, [row[method] for row in rows], color=colour, linestyle=line,
            marker=marker or "o", markersize=4, label=method,
        )  # fmt: skip
    accuracy.set_xlabel("measured answer age at arrival, p50 (ms)")
    accuracy.set_ylabel("mIoU (%)")
    accuracy.grid(alpha=0.3)
    accuracy.legend(fontsize=8)
    accuracy.set_title(f"live, {profile or 'fixed delay'} link", fontsize=10)
    rtts = [row["rtt_ms"] for row in rows]
    cost.plot(rtts, [row["edge_p50_ms"] for row in rows], marker="o", label="edge p50 (ms)")
    cost.plot(rtts, [row["edge_p99_ms"] for row in rows], marker="o", label="edge p99 (ms)")
    cost.set_xlabel("configured RTT (ms)")
    cost.set_ylabel("edge step latency (ms)")
    rate = cost.twinx()
    rate.plot(rtts, [row["downlink_kbps"] for row in rows], "k--", marker="s", label="downlink")
    rate.set_ylabel("downlink kbit/s")
    cost.grid(alpha=0.3)
    cost.legend(fontsize=8, loc="upper left")
    rate.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The sweep table as Markdown."""
    header = "| " + " | ".join(COLUMNS) + " |"
    rule = "|---" * len(COLUMNS) + "|"
    lines = ["| " + " | ".join(f"{row[c]}" for c in COLUMNS) + " |" for row in rows]
    return "\n".join([header, rule, *lines])
