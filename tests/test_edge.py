"""The edge loop against a real server over real sockets: it never waits on the network."""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from splitcast.demo import format_summary
from splitcast.edge.client import ANSWER_TOO_OLD
from splitcast.edge.loop import EdgeOptions, EdgeSummary, run_edge
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import ChildProcess, start_link, start_server


def _run(target: str | None, frames: int, log_path: Path, **overrides: object) -> EdgeSummary:
    settings: dict[str, object] = {
        "realtime": True,
        "wait_for_server_s": 30.0 if target else 0.0,
        **overrides,
    }
    options = EdgeOptions(
        model="tiny",
        server=target,
        log_path=log_path,
        progress=False,
        **settings,
    )
    return run_edge(MovingSceneSource(num_frames=frames), options)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP port that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@contextmanager
def _separate_cores(*children: ChildProcess) -> Iterator[None]:
    """Run this process (the edge, one torch thread) on one core and the children (server,
    link) on the others, so that when the server's step runs relative to the edge's step does
    not change how much CPU the edge gets."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores to keep server and edge apart")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for child in children:
        os.sched_setaffinity(child.process.pid, cores[1:])
    os.sched_setaffinity(0, cores[:1])
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)


# Slow: a timing comparison on this machine's shared vCPUs, which has failed now and then
# (three times on record, see the README's Status); run it with `pytest -s -m slow -k 300ms`.
@pytest.mark.slow
def test_latency_with_a_300ms_link_matches_a_0ms_link(server: ChildProcess, tmp_path: Path) -> None:
    """One 60 s edge run through a link whose RTT switches between 0 and 300 ms every second.

    The two vCPUs of this machine are at times placed on one physical core: while the server
    computes on the other vCPU, the edge's step then takes ~40 % longer (its own CPU time, not
    preemption), in spells of one to a few seconds whatever the link; a torch matmul loop on
    the other core reproduces it without splitcast. Separate runs per link therefore disagreed
    by up to 30 %. Phases of one second within one run share those spells, the processes and
    their CPU placement; a frame belongs to the 0 ms link when the answer it used is at
    most 3 frames old, and to the 300 ms link when they are at least 9 frames old (the frames
    in between are the switches).
    """
    phases = ["time_s,delay_ms,bandwidth_mbit"]
    phases += [f"{index},{300 if index % 2 else 0}," for index in range(64)]
    conditions = tmp_path / "alternating.csv"
    conditions.write_text("\n".join(phases) + "\n")
    log_path = tmp_path / "edge.jsonl"
    with (
        start_link(server.address, 0.0, extra=["--conditions", str(conditions)]) as link,
        _separate_cores(server, link),
    ):
        summary = _run(link.address, 1800, log_path, max_staleness_frames=30)
    records = _records(log_path)
    fresh = [r["latency_ms"] for r in records if r["mode"] == "combined" and r["d_o"] <= 3]
    late = [r["latency_ms"] for r in records if r["mode"] == "combined" and r["d_o"] >= 9]
    assert summary.combined_fraction > 0.9, "both phases must actually use answers"
    assert len(fresh) >= 500 and len(late) >= 500, (len(fresh), len(late))
    fresh_p50, late_p50 = statistics.median(fresh), statistics.median(late)
    print(
        f"edge p50 latency: 0 ms link {fresh_p50:.2f} ms ({len(fresh)} frames), "
        f"300 ms link {late_p50:.2f} ms ({len(late)} frames), {late_p50 / fresh_p50 - 1:+.1%}"
    )
    assert abs(late_p50 - fresh_p50) <= 0.10 * fresh_p50


def test_a_server_that_never_answers_does_not_slow_the_edge(
    black_hole: str, tmp_path: Path
) -> None:
    # As fast as the edge can go, not at 30 fps: a real-time run skips frames whenever the
    # machine is slower than the camera (a CI runner took 22-39 ms per tiny-model frame), which
    # says nothing about the network; waiting on it would show up as latency here.
    alone, stuck = [], []
    for repeat in range(3):
        # no waiting for a stream that never comes up: the edge connects in the background
        stuck_log = tmp_path / f"stuck-{repeat}.jsonl"
        stuck.append(_run(black_hole, 60, stuck_log, realtime=False, wait_for_server_s=0.0))
        alone.append(_run(None, 60, tmp_path / f"alone-{repeat}.jsonl", realtime=False))
    # Medians over three interleaved runs: single runs on this shared machine sometimes come
    # out 30 % faster or slower as a whole.
    alone_p50 = statistics.median(run.latency_p50_ms for run in alone)
    stuck_p50 = statistics.median(run.latency_p50_ms for run in stuck)
    print(
        f"edge p50 latency: no server {[run.latency_p50_ms for run in alone]} ms, "
        f"silent server {[run.latency_p50_ms for run in stuck]} ms"
    )
    for run in stuck:
        assert run.frames == 60 and run.skipped == 0 and run.combined == 0
    # Waiting on the server would cost its 5 s connect timeout per attempt. What the silent
    # server does cost is CPU: its runs keep gRPC's connection threads busy on the two shared
    # cores, and local-only runs sometimes get the machine's faster mode (seen: 8.4-8.9 ms
    # alone vs 11.2-11.8 ms with the silent server, and 11.5-12.7 ms for both).
    assert stuck_p50 <= 1.5 * alone_p50
    for repeat in range(3):
        records = _records(tmp_path / f"stuck-{repeat}.jsonl")
        assert all(record["mode"] == "local_only" for record in records)


def test_answers_older_than_ten_frames_inside_the_horizon_are_used_with_their_delay(
    server: ChildProcess, tmp_path: Path
) -> None:
    """A 500 ms round trip makes every answer at least 15 frames old: past the edge's old fixed
    10-frame cap, inside the model's 30-tick (1 s) answer horizon, so they are used, each with
    the frame it came from and the delay it was conditioned on."""
    with start_link(server.address, 250.0) as link:
        summary = _run(link.address, 120, tmp_path / "edge.jsonl")
    records = _records(tmp_path / "edge.jsonl")
    used = [r for r in records if r["mode"] == "combined"]
    assert summary.max_staleness_frames == 30, "the default limit is the model's horizon"
    assert len(used) >= 40, summary
    unmeasured = [r["requested_d_i"] for r in records if r["source_frame"] is None]
    assert unmeasured and set(unmeasured) == {30.0}, "before any answer: the answer horizon"
    for record in used:
        assert record["source_frame"] == record["frame"] - record["d_o"]
        assert 15 <= record["d_o"] <= 30, "500 ms is 15 frames at 30 fps"
        assert record["d_i"] is not None and record["rtt_ms"] >= 500.0
    settled = used[len(used) // 2 :]
    assert (
        statistics.median(r["d_i"] for r in settled)
        >= statistics.median(r["d_o"] for r in settled) - 1
    )


def test_answers_older_than_the_horizon_run_local_only_with_the_cause(
    server: ChildProcess, tmp_path: Path
) -> None:
    """A 1.4 s round trip makes every answer older than the 1 s horizon: the edge runs
    local-only and each frame says why."""
    with start_link(server.address, 700.0) as link:
        summary = _run(link.address, 90, tmp_path / "edge.jsonl")
    records = _records(tmp_path / "edge.jsonl")
    too_old = [r for r in records if r["cause"] == ANSWER_TOO_OLD]
    assert summary.combined == 0 and summary.causes[ANSWER_TOO_OLD] == len(too_old) >= 20
    assert all(r["mode"] == "stale" and r["d_o"] > 30 for r in too_old)
    assert "too stale" in format_summary(summary)


def test_answers_older_than_the_cap_are_counted_stale_with_the_server_time(
    server: ChildProcess, tmp_path: Path
) -> None:
    """A 100 ms RTT with a 2-frame cap: every answer arrives too late to fuse, and the summary
    says how late and how long the server took (what a user needs to see why)."""
    with start_link(server.address, 50.0) as link:
        summary = _run(link.address, 60, tmp_path / "edge.jsonl", max_staleness_frames=2)
    records = _records(tmp_path / "edge.jsonl")
    stale = [r for r in records if r["mode"] == "stale"]
    assert summary.combined == 0 and summary.stale == len(stale) > 0
    assert summary.max_staleness_frames == 2
    assert summary.stale_d_o_p50_frames == statistics.median(r["d_o"] for r in stale) >= 3
    assert summary.server_time_p50_ms is not None and summary.server_time_p50_ms > 0
    assert "too stale" in format_summary(summary)


def test_edge_finishes_local_only_when_the_server_dies(tmp_path: Path) -> None:
    log_path = tmp_path / "edge.jsonl"
    with start_server("tiny", threads=1) as doomed:
        killer = threading.Timer(2.5, doomed.kill)
        killer.start()
        summary = _run(doomed.address, 150, log_path)
        killer.join()
    records = _records(log_path)
    assert summary.frames + summary.skipped == 150
    assert summary.skipped <= 3
    assert summary.combined > 20, "answers were used before the kill"
    tail = records[-40:]
    assert not any(r["mode"] == "combined" for r in tail), (
        "no answer can be used long after the server died"
    )
    assert not any(r["connected"] for r in tail)
