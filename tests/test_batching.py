"""Frames of several streams stepped together: the same answers as one at a time, each
stream's own context, and batches that never wait longer than the limit."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

import splitcast
from splitcast.cloud.batching import Batcher
from splitcast.cloud.options import ServeOptions
from splitcast.cloud.runtime import RemoteRuntime, Work
from splitcast.cloud.session import ReadRate
from splitcast.edge.client import EdgeResult
from splitcast.edge.sources import MovingSceneSource
from splitcast.models.registry import build


def test_a_batch_answers_exactly_as_its_streams_would_alone() -> None:
    torch.manual_seed(0)
    system = build("tiny").eval()
    batched, alone = RemoteRuntime(system), RemoteRuntime(system)
    frames = list(MovingSceneSource(num_frames=12, seed=3).frames())
    streams = [(batched.new_stream(), alone.new_stream()) for _ in range(3)]
    for step in range(4):  # contexts fill up differently per stream
        work = [(index, frames[(3 * index + step) % 12], 1.0 + index + step) for index in range(3)]
        together = batched.answer_batch(
            [Work(streams[i][0], step, rgb, delay) for i, rgb, delay in work]
        )
        for (index, rgb, delay), (answer, used) in zip(work, together, strict=True):
            expected, expected_used = alone.answer(streams[index][1], step, rgb, delay)
            assert used == expected_used
            for name, tensor in answer.items():
                assert torch.allclose(tensor, expected[name], atol=1e-4), (name, step)


def test_batches_fill_up_or_go_after_the_wait() -> None:
    batches: list[list[int]] = []

    def step(items: list[int]) -> list[int]:
        batches.append(list(items))
        return [item * 2 for item in items]

    async def scenario() -> tuple[list[int], float, float]:
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(step, executor, max_batch=3, max_wait_s=0.3)
            start = time.monotonic()
            full = await asyncio.gather(*(batcher.run(i) for i in range(3)))
            full_s = time.monotonic() - start
            start = time.monotonic()
            lone = await batcher.run(7)
            lone_s = time.monotonic() - start
            batcher.close()
        return [*full, lone], full_s, lone_s

    results, full_s, lone_s = asyncio.run(scenario())
    assert results == [0, 2, 4, 14]
    assert batches == [[0, 1, 2], [7]]
    assert full_s < 0.25  # a full batch does not wait
    assert 0.25 <= lone_s < 1.0  # a lone item waits for company, but no longer than the limit


def test_a_stream_at_its_read_cap_waits_for_the_others() -> None:
    order: list[str] = []

    def step(items: list[str]) -> list[str]:
        time.sleep(0.05)
        order.extend(items)
        return items

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(step, executor, max_batch=1)
            busy = asyncio.ensure_future(batcher.run("busy"))
            await asyncio.sleep(0.01)  # the model thread is busy with the first item
            flood = asyncio.ensure_future(batcher.run("flood", priority=1))
            await asyncio.sleep(0.01)
            normal = asyncio.ensure_future(batcher.run("normal"))
            await asyncio.gather(busy, flood, normal)
            batcher.close()

    asyncio.run(scenario())
    assert order == ["busy", "normal", "flood"]


def test_a_sender_that_always_has_its_next_frame_waiting_floods() -> None:
    rate = ReadRate(60.0)
    for _ in range(ReadRate.WINDOW - 1):
        rate.read(0.0)
    assert not rate.flooding and rate.interval_s == 1 / 60  # not yet a full window
    rate.read(0.0)
    assert rate.flooding and rate.interval_s == 1 / 10  # read at a sixth of the cap
    rate.read(0.03)  # a camera-paced sender makes the reader wait
    assert not rate.flooding
    assert not ReadRate(0.0).flooding and ReadRate(0.0).interval_s == 0.0


def test_streams_are_stepped_together_and_keep_their_own_context() -> None:
    options = ServeOptions(max_batch=4, max_wait_s=0.15, metrics_port=0)
    frames = list(MovingSceneSource(num_frames=60).frames())
    results: list[list[EdgeResult]] = [[] for _ in range(3)]
    with splitcast.serve(build("tiny"), options=options) as server:
        edges = [splitcast.EdgeClient(build("tiny"), server=server.address) for _ in range(3)]
        for edge in edges:
            edge.start()
            assert edge.wait_connected(30.0)

        def drive(edge: splitcast.EdgeClient, out: list[EdgeResult], offset: int) -> None:
            for index, rgb in enumerate(frames):
                out.append(edge.step(rgb, sequence=offset + index))
                time.sleep(0.03)

        drivers = [
            threading.Thread(target=drive, args=(edge, out, 1000 * n))
            for n, (edge, out) in enumerate(zip(edges, results, strict=True))
        ]
        for driver in drivers:
            driver.start()
        for driver in drivers:
            driver.join()
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        for edge in edges:
            edge.close()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    mean_batch = float(values["splitcast_batch_size_sum"]) / float(
        values["splitcast_batch_size_count"]
    )
    assert mean_batch > 1.5, mean_batch
    for n, out in enumerate(results):
        answered = [r for r in out if r.context_frames is not None]
        assert answered and any(r.mode == "combined" for r in out)
        own = range(1000 * n, 1000 * n + len(frames))
        assert all(set(r.context_frames) <= set(own) for r in answered)  # never another's
        sources = [r.source_frame for r in answered]
        assert sources == sorted(sources)
    assert np.mean([len(out) for out in results]) == len(frames)
