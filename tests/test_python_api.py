"""The Python API a pipeline calls: the README's quick start against a real server, the edge
step shared with offline evaluation, and the uplink encoding the server's Info asks for."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import cv2
import grpc
import pytest
import torch
from conftest import stream_frames

import splitcast
from splitcast.data.build import build_split
from splitcast.data.clips import open_clips
from splitcast.data.scene.generator import SceneSettings
from splitcast.edge.client import MODES
from splitcast.edge.slots import ReceivedAnswer
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import start_server
from splitcast.models.answers import AnswerUse
from splitcast.models.checkpoint import save_checkpoint
from splitcast.models.codec import get_codec
from splitcast.models.combiners import LateAverage
from splitcast.models.evaluation import OfflineEvaluator, ScheduledFrame
from splitcast.models.registry import SplitSystem, build
from splitcast.v1 import splitcast_pb2 as pb

README = Path(__file__).resolve().parents[1] / "README.md"


def _quick_start() -> str:
    text = README.read_text()
    section = text.split("## Python quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Python quick start has a python code block"
    return match.group(1)


def test_readme_python_quick_start_runs_against_a_real_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = list(MovingSceneSource(num_frames=40).frames())
    writer = cv2.VideoWriter(
        str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (512, 256)
    )
    for rgb in frames:
        writer.write(cv2.cvtColor(cv2.resize(rgb, (512, 256)), cv2.COLOR_RGB2BGR))
    writer.release()
    code = _quick_start()
    assert "127.0.0.1:50051" in code
    monkeypatch.chdir(tmp_path)
    with start_server("default", threads=1) as server:
        exec(compile(code.replace("127.0.0.1:50051", server.address), "README.md", "exec"), {})
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [int(line[0]) for line in lines] == list(range(40))
    assert {line[1] for line in lines} <= set(MODES)
    assert any(line[1] != "local_only" for line in lines), "answers came back from the server"
    assert all(line[3:] == ["(128,", "256)"] for line in lines)


def _late(system: SplitSystem, uses: list[AnswerUse]) -> SplitSystem:
    late = system.with_combiner(LateAverage.name)
    return dataclasses.replace(late, config=late.config.with_policy(LateAverage.name, uses))


def test_edge_client_and_the_evaluator_give_identical_class_ids(tmp_path: Path) -> None:
    build_split(
        tmp_path / "clips", "calib", clips=1, frames=16, settings=SceneSettings(height=96),
        progress=False,
    )  # fmt: skip
    dataset = open_clips(tmp_path / "clips")
    clip = dataset.clips[0]
    system = _late(build("tiny"), [AnswerUse(0.6, 3, 0.4)])
    label_size = tuple(clip.label(0).shape)
    client = splitcast.EdgeClient(
        system, server="127.0.0.1:1", fps=dataset.meta.fps, runtime="torch", output_size=label_size
    )  # never started: the answers below are put where the connection would put them
    evaluator = OfflineEvaluator(
        system, dataset, codec=get_codec(system.config.codec), local=client.model.step.local
    )
    state = evaluator.clip_state(clip, set(range(clip.num_frames)))
    schedule: dict[int, ScheduledFrame] = {}
    modes = []
    for t in range(clip.num_frames):
        source = t - 3
        context = list(range(source - 3, source + 1)) if source >= 3 else None
        if context is not None:
            answer = evaluator.remote_answer(state, context, 3.0)
            client.connection.answers.put(
                ReceivedAnswer(source, 3.0, answer, 0, 0.0, 0.0, 0, tuple(context))
            )
        result = client.step(clip.frame(t))
        modes.append(result.mode)
        schedule[t] = ScheduledFrame(context, 3.0 if context else None, None, result.class_ids)
    assert modes.count("combined") == clip.num_frames - 6 and modes.count("local_only") == 6
    replay = evaluator.run_schedule({clip.name: schedule}, progress=False)
    assert replay["replay_agreement"] == 1.0


class UplinkRecorder(grpc.aio.ServerInterceptor):
    """Records the image format and first bytes of every uplink frame the server receives."""

    def __init__(self) -> None:
        self.images: list[tuple[int, bytes]] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if not details.method.endswith("/Stream"):
            return handler
        behaviour, images = handler.stream_stream, self.images

        async def recording(
            requests: AsyncIterator[pb.UplinkFrame], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[pb.DownlinkMessage]:
            async def frames() -> AsyncIterator[pb.UplinkFrame]:
                async for frame in requests:
                    images.append((frame.image.format, frame.image.data[:12]))
                    yield frame

            async for reply in behaviour(frames(), context):
                yield reply

        return grpc.stream_stream_rpc_method_handler(
            recording, handler.request_deserializer, handler.response_serializer
        )


def test_the_live_edge_sends_the_uplink_encoding_the_server_asks_for(tmp_path: Path) -> None:
    system = build("tiny")
    system.config = dataclasses.replace(system.config, uplink_format="webp", uplink_quality=85)
    folder = tmp_path / "tiny-webp"
    save_checkpoint(system, folder, {}, half=False)
    model = splitcast.load_model(folder)
    recorder = UplinkRecorder()
    with (
        splitcast.serve(model, encoder="torch", interceptors=[recorder]) as server,
        splitcast.EdgeClient(model, server=server.address) as edge,
    ):
        results = stream_frames(edge)
        stats = edge.stats
    assert stats.uplink == "webp q85"
    assert len(recorder.images) == stats.frames_sent > 0
    for image_format, head in recorder.images:
        assert image_format == pb.IMAGE_FORMAT_WEBP
        assert head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    assert any(result.mode == "combined" for result in results)


def _smaller_local_input(system: SplitSystem) -> SplitSystem:
    return dataclasses.replace(
        system, config=dataclasses.replace(system.config, local_size=(96, 192))
    )


@pytest.mark.parametrize(
    ("serve_as", "refusal"),
    [
        (
            lambda system: _late(system, [AnswerUse(0.5)]),
            "answers for late_average with forecast [19, 24, 48] logprobs-u4-zstd, on_time "
            "[19, 24, 48] logprobs-u4-zstd; this edge combines feature_fusion answers of "
            "features [32, 16, 32] raw-fp16",
        ),
        (
            _smaller_local_input,
            "for a 96x192 local input at 30 fps; this edge's is 128x256 at 30 fps",
        ),
    ],
    ids=["combiner", "local-input"],
)
def test_an_edge_refuses_a_server_it_does_not_match_and_runs_local_only(
    serve_as: Callable[[SplitSystem], SplitSystem], refusal: str
) -> None:
    frames = list(MovingSceneSource(num_frames=10).frames())
    with (
        splitcast.serve(serve_as(build("tiny")), encoder="torch") as server,
        splitcast.EdgeClient(build("tiny"), server=server.address) as edge,
    ):
        deadline = time.monotonic() + 30
        while not edge.stats.last_error and time.monotonic() < deadline:
            time.sleep(0.05)
        modes = {edge.step(rgb).mode for rgb in frames}
    assert refusal in edge.stats.last_error
    assert modes == {"local_only"}


def test_an_edge_decodes_the_codec_its_server_announces() -> None:
    with (
        splitcast.serve(build("tiny"), codec="int8-zstd", encoder="torch") as server,
        splitcast.EdgeClient(build("tiny"), server=server.address) as edge,
    ):
        results = stream_frames(edge)
    assert [t.codec for t in edge.connection.wire] == ["int8-zstd"]
    assert edge.stats.decode_errors == 0 and edge.stats.answers_received > 0
    assert any(result.mode == "combined" for result in results)


def test_frames_a_caller_skips_still_count_in_the_answer_age() -> None:
    system = _late(build("tiny"), [AnswerUse(0.5)])
    client = splitcast.EdgeClient(system, server="127.0.0.1:1", runtime="torch")
    answer = {t.name: torch.zeros(1, *t.shape) for t in client.model.expected.tensors}
    client.connection.answers.put(ReceivedAnswer(2, 3.0, answer, 0, 0.0, 0.0, 0, (2,)))
    rgb = next(iter(MovingSceneSource(num_frames=1).frames()))
    skipped_to = client.step(rgb, sequence=7)
    assert (skipped_to.frame, skipped_to.d_o, skipped_to.mode) == (7, 5, "combined")
    following = client.step(rgb)
    assert (following.frame, following.d_o) == (8, 6)
    client.close()  # never started: closing is still fine
