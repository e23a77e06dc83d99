"""Training end to end on a small synthetic build: it learns, checkpoints load safely,
training resumes, and a two-process torchrun run completes."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from splitcast.data.build import build_split
from splitcast.data.scene.generator import SceneSettings
from splitcast.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_system,
    load_system_state,
    save_checkpoint,
    system_state,
)
from splitcast.models.registry import build, get_config
from splitcast.models.train_options import TrainOptions
from splitcast.models.training import Trainer

CONFIG_YAML = """
base: tiny
name: tiny-test
remote_size: [96, 192]
local_size: [64, 128]
"""


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    settings = SceneSettings(height=96)
    build_split(root / "train", "train", clips=4, frames=20, settings=settings, progress=False)
    build_split(root / "val", "val", clips=2, frames=20, settings=settings, progress=False)
    (root / "tiny-test.yaml").write_text(CONFIG_YAML)
    return root


def _train(
    splits: Path,
    out: Path,
    *extra: str,
    config: str = "tiny",
    runner: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    command = [
        *(runner or [sys.executable, "-m", "splitcast"]), "train", "--config", config,
        "--data", str(splits / "train"), "--out", str(out), "--batch-size", "4", "--workers", "0",
        "--warmup-steps", "5", "--lr", "5e-3", "--delays", "0-5", *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _val_miou(splits: Path, out: Path, system_weights: dict[str, torch.Tensor] | None) -> float:
    config = get_config("tiny")
    options = TrainOptions(
        config,
        splits / "val",
        out / "eval",
        val_data=splits / "val",
        workers=0,
        progress=False,
        delays=(0.0, 5.0),
        val_delays=(3.0,),
        val_every=1,
    )
    trainer = Trainer(options)
    if system_weights is not None:
        load_system_state(trainer.system, system_weights, strict=False)
    return trainer.validate()["d=3"]["fused"]


def test_training_learns_and_writes_a_safe_checkpoint(splits: Path, tmp_path: Path) -> None:
    result = _train(splits, tmp_path / "run", "--epochs", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["config"]["name"] == "tiny" and len(meta["history"]) == 3
    assert set(meta["history"][-1]["val_miou"]) == {"d=0", "d=3", "d=5"}
    assert "git_revision" in meta and meta["data"]["val"].endswith("val")
    trained = _val_miou(splits, tmp_path, load_file(str(tmp_path / "run" / "model.safetensors")))
    untrained = _val_miou(splits, tmp_path, None)
    print(f"fused val mIoU at d=3: untrained {untrained:.2f}, trained {trained:.2f}")
    assert trained > untrained + 2.0
    system, loaded_meta = load_checkpoint(tmp_path / "run")
    assert system.config.version == loaded_meta["config"]["version"] != "random-seed0"


def test_a_stopped_training_resumes_to_the_same_step(splits: Path, tmp_path: Path) -> None:
    """SIGTERM mid-run (a preempted job) leaves the last epoch's checkpoint and state whole;
    `--resume` ends at the step an uninterrupted run ends at."""
    config, run = str(splits / "tiny-test.yaml"), tmp_path / "run"
    command = [
        sys.executable, "-m", "splitcast", "train", "--config", config, "--data",
        str(splits / "train"), "--out", str(run), "--batch-size", "4", "--workers", "0",
        "--warmup-steps", "5", "--lr", "5e-3", "--epochs", "3", "--delays", "0-5",
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as first:
        assert first.stdout is not None
        epoch_one = json.loads(next(line for line in first.stdout if line.startswith("{")))
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143, first.stderr.read()[-2000:] if first.stderr else ""
    stopped = json.loads((run / "history.json").read_text())
    assert 1 <= len(stopped) < 3 and stopped[0] == epoch_one
    assert load_checkpoint(run)[1]["history"] == stopped  # the checkpoint matches its state
    resumed = _train(splits, run, "--epochs", "3", "--resume", config=config)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    history = json.loads((run / "history.json").read_text())
    assert json.loads((run / "meta.json").read_text())["config"]["name"] == "tiny-test"
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["step"] == 3 * epoch_one["step"]


def test_a_time_budget_ends_training_early_and_its_plan_survives_a_resume(
    splits: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    first = _train(splits, run, "--epochs", "200", "--time-budget", "0.1")
    assert first.returncode == 0, first.stderr[-2000:]
    state = torch.load(run / "training_state.pt", weights_only=True)
    per_epoch = json.loads((run / "history.json").read_text())[0]["step"]
    assert bool(state["planned"]) and 10 <= int(state["total"]) < 200 * per_epoch
    assert int(state["step"]) == int(state["total"])  # the plan, not the epochs, ended it
    resumed = _train(splits, run, "--epochs", "200", "--time-budget", "0.1", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = torch.load(run / "training_state.pt", weights_only=True)
    assert int(again["step"]) == int(state["step"])  # nothing left to do


@pytest.mark.slow  # keeps the default run within CI's time; `pytest -m slow` runs it
def test_gradient_accumulation_steps_the_optimizer_once_per_n_batches(
    splits: Path, tmp_path: Path
) -> None:
    steps = {}
    for accumulate in (1, 2):
        run = tmp_path / f"accumulate{accumulate}"
        result = _train(splits, run, "--epochs", "1", "--accumulate", str(accumulate))
        assert result.returncode == 0, result.stderr[-2000:]
        record = json.loads((run / "history.json").read_text())[0]
        assert all(math.isfinite(value) for value in record["train_loss"].values())
        steps[accumulate] = record["step"]
    assert steps[2] == steps[1] // 2 >= 1


def test_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    system = build("tiny")
    version = save_checkpoint(system, tmp_path / "ckpt", {"note": "test"}, half=False)
    loaded = load_system(tmp_path / "ckpt")
    assert loaded.config.version == version
    frame = torch.rand(1, 3, *system.config.local_size)
    with torch.inference_mode():
        assert torch.equal(system.local(frame), loaded.local(frame))
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        load_system(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="no model named"):
        load_system(tmp_path / "nowhere")


def test_codec_fine_tune_trains_only_the_bottleneck_and_can_be_dropped(
    splits: Path, tmp_path: Path
) -> None:
    start = build("tiny")
    start_version = save_checkpoint(start, tmp_path / "start", {}, half=False)
    result = _train(
        splits, tmp_path / "codec", "--init", str(tmp_path / "start"), "--codec", "learned",
        "--codec-width", "4", "--codec-stride", "1", "--rate-lambda", "1e-3",
        "--train-only", "codec", "--epochs", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    tuned, meta = load_checkpoint(tmp_path / "codec")
    assert meta["config"]["codec"] == "learned" and tuned.bottleneck is not None
    assert meta["initialised_from"]["version"] == start_version
    assert tuned.bottleneck.finalized and tuned.bottleneck.width == 4
    assert tuned.bottleneck.stride == 1
    before = system_state(start)
    after = system_state(tuned)
    assert all(torch.equal(before[k], after[k]) for k in before)
    history = meta["history"]
    print("estimated downlink bits per frame by epoch:", [h["train_loss"]["bits"] for h in history])
    assert history[-1]["train_loss"]["bits"] < history[0]["train_loss"]["bits"]
    dropped = _train(
        splits, tmp_path / "raw", "--init", str(tmp_path / "codec"), "--codec", "none",
        "--epochs", "1", "--max-steps", "2",
    )  # fmt: skip
    assert dropped.returncode == 0, dropped.stderr[-2000:]
    raw, raw_meta = load_checkpoint(tmp_path / "raw")
    assert raw.bottleneck is None and raw_meta["config"]["codec"] == "raw-fp16"
    assert raw_meta["config"]["bottleneck"] is None
    assert not any(k.startswith("bottleneck.") for k in system_state(raw))


@pytest.mark.slow  # keeps the default run within CI's time; `pytest -m slow` runs it
def test_remote_upper_stages_train_on_cached_features_and_are_stored(
    splits: Path, tmp_path: Path
) -> None:
    result = _train(splits, tmp_path / "top", "--train-remote-top", "--epochs", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    stored = load_file(str(tmp_path / "top" / "model.safetensors"))
    backbone_keys = {k for k in stored if k.startswith("remote.backbone.")}
    assert backbone_keys and all(k.startswith("remote.backbone.body.to32.") for k in backbone_keys)
    tuned, meta = load_checkpoint(tmp_path / "top")
    assert meta["config"]["trained"]["remote_trained_from"] == 16
    before = system_state(build("tiny"))
    after = system_state(tuned)
    backbone = [k for k in before if k.startswith("remote.backbone.")]
    changed = {k.split(".")[3] for k in backbone if not torch.equal(before[k], after[k])}
    assert changed == {"to32"}
    upper = _train(
        splits,
        tmp_path / "upper",
        "--init",
        str(tmp_path / "top"),
        "--train-remote-top",
        "8",
        "--epochs",
        "1",
    )
    assert upper.returncode == 0, upper.stderr[-2000:]
    stored = load_file(str(tmp_path / "upper" / "model.safetensors"))
    stages = {k.split(".")[3] for k in stored if k.startswith("remote.backbone.")}
    assert stages == {"to16", "to32"}
    upper_tuned, upper_meta = load_checkpoint(tmp_path / "upper")
    assert upper_meta["config"]["trained"]["remote_trained_from"] == 8
    moved = system_state(upper_tuned)
    assert any(not torch.equal(after[k], moved[k]) for k in backbone if ".to16." in k)
    caches = set((splits / "cache").iterdir())
    again = _train(
        splits,
        tmp_path / "again",
        "--init",
        str(tmp_path / "upper"),
        "--train-remote-top",
        "--epochs",
        "1",
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert load_checkpoint(tmp_path / "again")[1]["config"]["trained"]["remote_trained_from"] == 8
    # Its upper stages differ from those of "upper", which encoded the same frames: the cache
    # is keyed by the frozen stages below stride 8 alone, so it is reused.
    assert set((splits / "cache").iterdir()) == caches
    both = _train(splits, tmp_path / "both", "--train-remote-top", "--train-remote-backbone")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_the_forecast_warp_and_dropout_fine_tune_from_a_plain_checkpoint(
    splits: Path, tmp_path: Path
) -> None:
    start = build("tiny")
    save_checkpoint(start, tmp_path / "start", {}, half=False)
    result = _train(
        splits, tmp_path / "warp", "--init", str(tmp_path / "start"), "--forecast-warp",
        "--fused-dropout", "0.5", "--epochs", "1", "--delays", "0-6",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    tuned, meta = load_checkpoint(tmp_path / "warp")
    assert meta["config"]["network"]["forecast_warp"] is True
    assert meta["training"]["fused_dropout"] == 0.5
    assert tuned.remote.warp is not None and tuned.remote.warp.motion.weight.abs().sum() > 0
    bad = _train(splits, tmp_path / "bad", "--fused-dropout", "1.5")
    assert bad.returncode == 2 and "probability in [0, 1)" in bad.stderr


@pytest.mark.slow
def test_two_process_torchrun_training_completes(splits: Path, tmp_path: Path) -> None:
    runner = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free rendezvous port on this host (--master_port 0 hangs)
        "--nproc_per_node",
        "2",
        "-m",
        "splitcast",
    ]
    result = _train(splits, tmp_path / "ddp", "--epochs", "1", "--threads", "1", runner=runner)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert history[0]["step"] >= 1 and "val_miou" in history[0]
