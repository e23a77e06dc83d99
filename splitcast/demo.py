"""`splitcast demo`: server, link and edge on loopback, an overlay video and a summary.

One machine plays both roles here, so the demo arranges them as a user would arrange two: the
edge, the real-time part, gets the CPU first (the server runs at a lower priority, the video is
drawn off the edge's loop); and before the run it measures how fast the server answers and
says how old its answers will be against the checkpoint's answer horizon.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from splitcast.edge.client import ANSWER_TOO_OLD, horizon_frames
from splitcast.edge.loop import EdgeOptions, EdgeSummary, run_edge
from splitcast.edge.model import open_edge_model
from splitcast.edge.sources import FrameSource
from splitcast.files import write_json
from splitcast.launch import SHARED_MACHINE_SERVER_NICE, start_link, start_server
from splitcast.loadgen import LoadOptions, run_load

PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class ExpectedAge:
    """How old the server's answers will be when the edge uses them, from a short probe of the
    server on loopback before the run: an answer is as old as the link's round trip plus the
    server's answer time when it arrives, and ages by one answer interval until the next."""

    server_answer_ms: float
    """Capture to answer on loopback, p50 (the server's queue and step)."""
    answers_per_s: float
    rtt_ms: float
    fps: float
    horizon_frames: int

    @property
    def newest_frames(self) -> float:
        return (self.rtt_ms + self.server_answer_ms) * self.fps / 1000.0

    @property
    def oldest_frames(self) -> float:
        return self.newest_frames + self.fps / max(self.answers_per_s, 1e-3)

    @property
    def inside_horizon(self) -> bool:
        return bool(self.answers_per_s) and self.oldest_frames <= self.horizon_frames

    def line(self) -> str:
        """One line for a person: the expected age against the horizon, and what to change
        when it does not fit."""
        if not self.answers_per_s:
            return (
                f"the server answered none of {PROBE_SECONDS:g} s of frames before the run: "
                "expect local-only output until it does (see server.log)"
            )
        head = (
            f"server answers in {self.server_answer_ms:.0f} ms ({self.answers_per_s:.1f}/s): "
            f"with the {self.rtt_ms:g} ms link they will be {self.newest_frames:.0f}-"
            f"{self.oldest_frames:.0f} frames old when used"
        )
        if self.inside_horizon:
            return f"{head}, inside the {self.horizon_frames}-frame answer horizon"
        return (
            f"{head}, past the {self.horizon_frames}-frame answer horizon: frames with older "
            "answers run local-only. A faster server (--device cuda, a faster or less busy "
            "machine), a shorter --rtt-ms or a checkpoint with a longer horizon would help"
        )


def probe_answer_age(
    server: str, rtt_ms: float, fps: float, horizon: int, seconds: float = PROBE_SECONDS
) -> ExpectedAge:
    """Stream `seconds` of frames at `fps` straight to `server` and time its answers."""
    paced = run_load(LoadOptions(server=server, streams=1, duration_s=seconds, fps=fps))["paced"]
    return ExpectedAge(paced["latency_p50_ms"] or 0.0, paced["answers_per_s"], rtt_ms, fps, horizon)


def run_demo(
    source: FrameSource,
    out_dir: Path,
    rtt_ms: float,
    model: str,
    device: str = "auto",
    precision: str | None = None,
    server_flags: list[str] | None = None,
    panels: bool = True,
    say: Callable[[str], None] = print,
) -> EdgeSummary:
    """Run the whole loop once in real time; writes demo.mp4 (the four-panel comparison, or
    splitcast's output alone without `panels`), demo.jsonl and summary.json. `device` and
    `precision`: the server's (and the edge's PyTorch runtime's); `server_flags`: more
    `splitcast serve` flags (e.g. `--compile`); `say`: where the expected answer age goes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    edge_model = open_edge_model(model, device=device, precision=precision)
    horizon = horizon_frames(edge_model.horizon_ticks, edge_model.expected.fps / source.fps)
    with ExitStack() as stack:
        server = stack.enter_context(
            start_server(
                model,
                log_path=out_dir / "server.log",
                extra=server_flags,
                device=device,
                precision=precision,
                nice=SHARED_MACHINE_SERVER_NICE,
            )
        )
        expected = probe_answer_age(server.address, rtt_ms, source.fps, horizon)
        say(expected.line())
        target = server.address
        if rtt_ms > 0:
            link = stack.enter_context(
                start_link(target, rtt_ms / 2, log_path=out_dir / "link.log")
            )
            target = link.address
        summary = run_edge(
            source,
            EdgeOptions(
                model=edge_model,
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
    write_json(
        out_dir / "summary.json",
        {"rtt_ms": rtt_ms, "expected_answer_age": asdict(expected), **summary.to_dict()},
    )
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
        f"{summary.max_staleness_frames}-frame limit (median D_o "
        f"{summary.stale_d_o_p50_frames:g}){server}"
    ]


def _cause_line(summary: EdgeSummary) -> list[str]:
    """Why the other frames used no answer (the link down, the server incompatible, ...)."""
    causes = {cause: n for cause, n in summary.causes.items() if cause != ANSWER_TOO_OLD}
    if not causes:
        return []
    return ["no answer       " + ", ".join(f"{n} {cause}" for cause, n in causes.items())]
