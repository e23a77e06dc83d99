"""Devices and execution providers: what is asked for and absent is a clear error naming it;
on a CUDA machine (tests marked `gpu`) training and serving run there and agree with the CPU."""

from __future__ import annotations

import copy
import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import stream_frames

import splitcast
from splitcast.cloud.runtime import RemoteRuntime, warm_runtime
from splitcast.data.build import build_split
from splitcast.data.clips import ClipWriter, DatasetMeta, open_clips, write_meta
from splitcast.data.sampling import Batch
from splitcast.data.scene.generator import SceneSettings
from splitcast.edge.client import EdgeClient
from splitcast.edge.sources import MovingSceneSource
from splitcast.models.checkpoint import save_checkpoint
from splitcast.models.config import ModelConfig
from splitcast.models.devices import (
    DeviceError,
    autocast,
    moved,
    placement,
    resolve_device,
    resolve_precision,
)
from splitcast.models.evaluation import OfflineEvaluator
from splitcast.models.losses import LOSSES, LossModel
from splitcast.models.providers import PROVIDERS, ProviderError, resolve_providers
from splitcast.models.registry import build, get_config

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _splitcast(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "splitcast", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_devices_resolve_and_bad_ones_are_named() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision(None, torch.device("cpu")) == "fp32"
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="not supported"):
        resolve_device("meta")
    with pytest.raises(DeviceError, match="bf16 is CUDA autocast"):
        resolve_precision("bf16", torch.device("cpu"))
    with pytest.raises(DeviceError, match="unknown precision"):
        resolve_precision("int4", torch.device("cpu"))


@no_cuda
def test_cuda_asked_for_without_a_gpu_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="'cuda:1' asked for, but CUDA is not available"):
        resolve_device("cuda:1")
    served = _splitcast("serve", "--model", "tiny", "--port", "0", "--device", "cuda")
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert "'cuda' asked for, but CUDA is not available" in served.stderr
    trained = _splitcast(
        "train", "--config", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
        "--device", "cuda",
    )  # fmt: skip
    assert trained.returncode == 2 and "CUDA is not available" in trained.stderr


@pytest.mark.slow  # keeps the default run within CI's time; `pytest -m slow` runs it
@no_cuda
def test_every_command_that_runs_a_model_names_a_missing_gpu(tmp_path: Path) -> None:
    data, checkpoint = tmp_path / "clips", tmp_path / "ckpt"
    settings = SceneSettings(height=64)
    build_split(data, "calib", clips=3, frames=8, settings=settings, progress=False)
    save_checkpoint(build("tiny"), checkpoint, {"note": "untrained tiny"})
    model = ("--checkpoint", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "o"))
    commands = {
        "evaluate": ("evaluate", *model),
        "evaluate --live": ("evaluate", *model, "--live"),
        "sweep": ("sweep", *model),
        "calibrate": ("calibrate", *model),
        "fit": ("fit", "--data", str(data), "--out", str(tmp_path / "fit")),
        "demo": ("demo", "--model", str(checkpoint), "--out", str(tmp_path / "demo")),
        "edge": ("edge", "--model", str(checkpoint), "--runtime", "torch", "--frames", "2"),
    }
    for name, command in commands.items():
        ran = _splitcast(*command, "--device", "cuda")
        assert ran.returncode == 2 and "Traceback" not in ran.stderr, (name, ran.stderr)
        assert "'cuda' asked for, but CUDA is not available" in ran.stderr, (name, ran.stderr)
    assert not (tmp_path / "fit").exists()


def test_a_missing_onnxruntime_provider_is_an_error_listing_the_available_ones() -> None:
    available = ort.get_available_providers()
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]
    missing = [name for name, full in PROVIDERS.items() if full not in available]
    if not missing:
        pytest.skip("this onnxruntime has every provider")
    with pytest.raises(ProviderError, match=rf"'{missing[0]}' is not in this onnxruntime.*cpu"):
        resolve_providers([missing[0], "cpu"])
    with pytest.raises(ProviderError, match="unknown provider 'npu'"):
        resolve_providers(["npu"])
    with pytest.raises(ProviderError, match=missing[0]):
        EdgeClient(build("tiny"), providers=(missing[0],))
    edge = _splitcast("edge", "--model", "tiny", "--providers", missing[0], "--frames", "2")
    assert edge.returncode == 2 and "Traceback" not in edge.stderr
    assert f"'{missing[0]}' is not in this onnxruntime" in edge.stderr


def test_the_runtimes_on_the_cpu_report_where_they_run() -> None:
    runtime = warm_runtime(build("tiny"), device="cpu")
    assert (runtime.device.type, runtime.precision) == ("cpu", "fp32")
    assert EdgeClient(build("tiny")).local_runtime == "onnxruntime on CPUExecutionProvider"
    in_torch = EdgeClient(build("tiny"), runtime="torch", device="cpu")
    assert in_torch.local_runtime == "torch on cpu (fp32)"


def test_the_server_answers_the_same_in_every_layout_and_compiled() -> None:
    system = build("tiny")
    runtimes = {
        "contiguous": RemoteRuntime(copy.deepcopy(system), encoder="torch", channels_last=False),
        "channels-last": RemoteRuntime(copy.deepcopy(system), encoder="torch"),
        "compiled": RemoteRuntime(copy.deepcopy(system), encoder="torch", compile=True),
    }
    streams = {name: runtime.new_stream() for name, runtime in runtimes.items()}
    frames = np.random.default_rng(0).integers(0, 256, (5, 96, 192, 3), dtype=np.uint8)
    for sequence, frame in enumerate(frames):
        answers = {
            name: runtime.answer(streams[name], sequence, frame, 2.0)[0]
            for name, runtime in runtimes.items()
        }
        reference = answers.pop("contiguous")
        for name, answer in answers.items():
            for tensor, expected in zip(answer.values(), reference.values(), strict=True):
                assert torch.allclose(tensor, expected, atol=1e-4), name


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none here")
def test_the_server_on_cuda_answers_like_the_cpu(precision: str) -> None:
    system = build("tiny")
    cpu = warm_runtime(system, device="cpu", encoder="torch")
    gpu_runtime = warm_runtime(copy.deepcopy(system), device="cuda", precision=precision)
    frames = np.random.default_rng(0).integers(0, 256, (4, 96, 192, 3), dtype=np.uint8)
    streams = (cpu.new_stream(), gpu_runtime.new_stream())
    for sequence, frame in enumerate(frames):
        on_cpu, _ = cpu.answer(streams[0], sequence, frame, 2.0)
        on_gpu, _ = gpu_runtime.answer(streams[1], sequence, frame, 2.0)
        for name, tensor in on_cpu.items():
            assert on_gpu[name].device.type == "cpu"
            tolerance = 1e-3 if precision == "fp32" else 0.1
            assert torch.allclose(on_gpu[name], tensor, atol=tolerance, rtol=tolerance)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none here")
REDUCED_PAPER = {"remote_size": (192, 320), "local_size": (128, 224)}


def _training_batch(config: ModelConfig, size: int = 2) -> Batch:
    """A batch of random frames and labels at the configuration's sizes."""
    generator = torch.Generator().manual_seed(0)
    remote, local = config.remote_size, config.local_size
    return Batch(
        remote=torch.rand(size, config.context_frames, 3, *remote, generator=generator),
        remote_now=torch.rand(size, 3, *remote, generator=generator),
        local=torch.rand(size, 3, *local, generator=generator),
        label=torch.randint(0, config.num_classes, (size, *local), generator=generator),
        delay=torch.tensor([0.0, 3.0][:size]),
        clips=["random"] * size,
        targets=list(range(size)),
    )


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_a_training_step_on_cuda_matches_the_cpu(name: str) -> None:
    config = get_config(name)
    if name == "paper":
        config = dataclasses.replace(config, **REDUCED_PAPER)
    system = build(config, pretrained=False)
    batch = _training_batch(config)
    losses = {}
    for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16")):
        model = LossModel(copy.deepcopy(system), dict.fromkeys(LOSSES, 1.0), 255).train()
        where = torch.device(device)
        model.to(where)
        with autocast(where, precision):
            loss, _ = model(moved(batch, where))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), (device, precision)
        losses[device, precision] = loss.item()
    cpu = losses["cpu", "fp32"]
    assert math.isfinite(cpu)
    assert abs(losses["cuda", "fp32"] - cpu) <= 1e-2 * abs(cpu), losses
    assert abs(losses["cuda", "bf16"] - cpu) <= 5e-2 * abs(cpu), losses


@pytest.mark.gpu
@needs_cuda
def test_evaluation_on_cuda_agrees_with_the_cpu(tmp_path: Path) -> None:
    # clips of the moving scene, labelled by brightness: no renderer needed on a GPU image
    frames = list(MovingSceneSource(num_frames=12).frames())
    meta = DatasetMeta(fps=30.0)
    for clip in ("a", "b"):
        writer = ClipWriter(tmp_path, clip)
        for index, rgb in enumerate(frames if clip == "a" else frames[::-1]):
            writer.write(index, rgb, (rgb.mean(axis=2) // 14) % meta.num_classes)
    write_meta(tmp_path, meta, ["a", "b"])
    dataset = open_clips(tmp_path)
    counts = {}
    for device in ("cpu", "cuda"):
        where, precision = placement(device, "fp32")  # on CUDA: TF32 off, as fp32 means
        evaluator = OfflineEvaluator(build("tiny"), dataset, device=where, precision=precision)
        evaluator.run([0.0, 2.0], progress=False)
        counts[device] = [cell.counts for cell in evaluator.matrices.cells()]
    for cpu, cuda in zip(counts["cpu"], counts["cuda"], strict=True):
        # each pixel predicted differently moves two counts of its label's row
        differing = np.abs(cpu - cuda).sum() / 2
        assert differing <= 0.01 * cpu.sum(), (differing, cpu.sum())


@pytest.mark.gpu
@needs_cuda
def test_the_server_on_cuda_serves_a_real_stream() -> None:
    with (
        splitcast.serve(build("tiny"), device="cuda") as server,
        splitcast.EdgeClient(build("tiny"), server=server.address) as edge,
    ):
        results = stream_frames(edge)
    assert any(result.mode == "combined" for result in results)
