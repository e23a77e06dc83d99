"""`splitcast demo`: server, link and edge on loopback, an overlay video and a summary."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import torch

from splitcast.edge.client import ANSWER_TOO_OLD
from splitcast.edge.loop import EdgeOptions, EdgeSummary, run_edge
from splitcast.edge.sources import FrameSource
from splitcast.files import write_json
from splitcast.launch import start_link, start_server


def run_demo(
    source: FrameSource,
    out_dir: Path,
    rtt_ms: float,
    model: str,
    device: str = "auto",
    precision: str | None = None,
    server_flags: list[str] | None = None,
    panels: bool = True,
) -> EdgeSummary:
    """Run the whole loop once in real time; writes demo.mp4 (the four-panel comparison, or
    splitcast's output alone without `panels`), demo.jsonl and summary.json. `device` and
    `precision`: the server's (and the edge's PyTorch runtime's); `server_flags`: more
    `splitcast serve` flags (e.g. `--compile`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        server = stack.enter_context(
            start_server(
                model,
                log_path=out_dir / "server.log",
                extra=server_flags,
                device=device,
                precision=precision,
            )
        )
        target = server.address
        if rtt_ms > 0:
            link = stack.enter_context(
                start_link(target, rtt_ms / 2, log_path=out_dir / "link.log")
            )
            target = link.address
        torch.set_num_threads(1)
        summary = run_edge(
            source,
            EdgeOptions(
                model=model,
                server=target,
                realtime=True,
                wait_for_server_s=30.0,
                video_path=out_dir / "demo.mp4",
                log_path=out_dir / "demo.jsonl",
                banner=f"RTT {rtt_ms:g} ms",
                panels=panels,
                device=device,
                precision=precision,
            ),
        )
    write_json(out_dir / "summary.json", {"rtt_ms": rtt_ms, **summary.to_dict()})
    return summary


def format_summary(summary: EdgeSummary) -> str:
    """A few lines a person reads after a run."""
    d_o = (
        f"{summary.mean_d_o_frames:.2f} frames ({summary.mean_d_o_ms:.0f} ms)"
        if summary.mean_d_o_frames is not None
        else "n/a (no answer used)"
    )
    lines = [
        f"frames          {summary.frames} output, {summary.skipped} skipped "
        f"({summary.output_fps:.1f} fps)",
        f"answers used    {summary.combined_fraction:.1%}",
        f"local model     {summary.local_runtime}",
        f"mean D_o        {d_o}",
        *_stale_line(summary),
        *_cause_line(summary),
        f"edge latency    p50 {summary.latency_p50_ms:.1f} ms, p99 {summary.latency_p99_ms:.1f} ms",
        f"uplink          {summary.uplink_kbps:.0f} kbit/s"
        + (f" ({summary.link['uplink']})" if summary.link.get("uplink") else ""),
        f"downlink        {summary.downlink_kbps:.0f} kbit/s",
    ]
    return "\n".join(lines)


def _stale_line(summary: EdgeSummary) -> list[str]:
    """Why frames that had an answer did not use it, when some did not: a user who sees few
    answers used needs to know whether the link or the server made them late."""
    if not summary.stale:
        return []
    server = (
        f"; server answers took {summary.server_time_p50_ms:.0f} ms (p50)"
        if summary.server_time_p50_ms is not None
        else ""
    )
    return [
        f"too stale       {summary.stale} frames had answers older than the "
        f"{summary.max_staleness_frames}-frame cap (median D_o "
        f"{summary.stale_d_o_p50_frames:g}){server}"
    ]


def _cause_line(summary: EdgeSummary) -> list[str]:
    """Why the other frames used no answer (the link down, the server incompatible, ...)."""
    causes = {cause: n for cause, n in summary.causes.items() if cause != ANSWER_TOO_OLD}
    if not causes:
        return []
    return ["no answer       " + ", ".join(f"{n} {cause}" for cause, n in causes.items())]
