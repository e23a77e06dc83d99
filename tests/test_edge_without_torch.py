"""The edge from an export folder runs where PyTorch cannot be imported, and its class ids
equal the full install's edge on the same frames and answers."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from splitcast.edge.exported import EXPORT_VERSION
from splitcast.edge.runtime import LocalRuntime
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import start_server
from splitcast.models.answers import AnswerUse
from splitcast.models.checkpoint import load_system, save_checkpoint
from splitcast.models.codec import get_codec
from splitcast.models.combiners import LateAverage
from splitcast.models.registry import SplitSystem, build

WITHOUT_TORCH = """
import importlib.abc, sys
TRAINING_STACK = ("torch", "torchvision", "timm", "onnx", "onnxscript", "pybullet",
                  "safetensors", "matplotlib")
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TRAINING_STACK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
"""
"""Prepended to a child's program: importing the training stack fails there as it does on an
edge-only install."""

SEGMENT = """
import json
from pathlib import Path
import numpy as np
from splitcast.edge.exported import ExportedEdge
from splitcast.models.answers import AnswerUse
inputs = np.load(sys.argv[2])
edge = ExportedEdge(Path(sys.argv[1]))
uses = [AnswerUse(*use) for use in json.loads(sys.argv[4])]
names = [t.name for t in edge.expected.tensors]
out = {}
for index, use in enumerate(uses):
    answer = None if index == 0 else {name: inputs[f"{name}{index}"] for name in names}
    out[f"ids{index}"] = edge.segment(inputs[f"frame{index}"], answer, None, use, index, 0)
np.savez(sys.argv[3], **out)
assert not any(name.split(".")[0] == "torch" for name in sys.modules), "torch was imported"
"""


def _run_without_torch(program: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH + program, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def late_average(tmp_path_factory: pytest.TempPathFactory) -> tuple[SplitSystem, Path]:
    """An exported tiny late-average checkpoint whose policy moves the on-time answer."""
    folder = tmp_path_factory.mktemp("late")
    system = build("tiny").with_combiner(LateAverage.name)
    uses = [AnswerUse(0.6, 3, 0.3), AnswerUse(0.5, 1, 0.0), AnswerUse(0.4, 5, 0.2)]
    system = dataclasses.replace(system, config=system.config.with_policy(LateAverage.name, uses))
    save_checkpoint(system, folder / "checkpoint", {})
    _export(folder / "checkpoint", folder / "export")
    return load_system(str(folder / "checkpoint")), folder / "export"


def _export(checkpoint: Path, out: Path) -> dict:
    """`splitcast export` in a child process: the exporter leaves threads behind, and a
    process that forks later (DataLoader workers of other tests) could deadlock on them."""
    command = [sys.executable, "-m", "splitcast", "export", "--checkpoint", str(checkpoint)]
    result = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text())


def _answers(system: SplitSystem, count: int) -> list[dict[str, np.ndarray]]:
    """What a server of `system` would send for `count` frames, decoded as the edge does."""
    combiner = system.combiner()
    codec = get_codec(system.config.codec, system.bottleneck)
    config = system.config
    generator = torch.Generator().manual_seed(1)
    answers = []
    with torch.inference_mode():
        frame = torch.rand(1, 3, *config.remote_size, generator=generator)
        context = torch.stack([system.remote.encode(frame)] * config.context_frames, 2)
        context = context + 0.1 * torch.randn(context.shape, generator=generator)
        for delay in range(count):
            sent = combiner.answer(context, torch.tensor([float(delay)]))[0]
            answers.append(
                {name: codec.decode(codec.encode(t[0].numpy()))[None] for name, t in sent.items()}
            )
    return answers


def _same_ids_without_torch(system: SplitSystem, export: Path, tmp_path: Path) -> None:
    combiner = system.combiner()
    uses = [combiner.use_at(age) for age in range(4)]
    frames = [rgb for rgb in MovingSceneSource(num_frames=8).frames()][::2]
    answers = _answers(system, len(uses))
    inputs = {f"frame{i}": frame for i, frame in enumerate(frames)}
    for index, answer in enumerate(answers):
        inputs.update({f"{name}{index}": tensor for name, tensor in answer.items()})
    np.savez(tmp_path / "inputs.npz", **inputs)
    records = json.dumps([dataclasses.astuple(use) for use in uses])
    result = _run_without_torch(
        SEGMENT, str(export), str(tmp_path / "inputs.npz"), str(tmp_path / "ids.npz"), records
    )
    assert result.returncode == 0, result.stderr[-3000:]
    exported = np.load(tmp_path / "ids.npz")
    for runtime in ("onnxruntime", "torch"):
        edge = LocalRuntime(system, runtime=runtime)
        for index, use in enumerate(uses):
            answer = None if index == 0 else answers[index]
            expected = edge.segment(frames[index], answer, None, use, index, 0)
            assert np.array_equal(exported[f"ids{index}"], expected), (runtime, index, use)


def test_late_average_export_gives_the_full_edges_ids_without_torch(
    late_average: tuple[SplitSystem, Path], tmp_path: Path
) -> None:
    system, export = late_average
    _same_ids_without_torch(system, export, tmp_path)


def test_feature_fusion_with_the_learned_codec_without_torch(
    learned_tiny: Path, tmp_path: Path
) -> None:
    manifest = _export(learned_tiny, tmp_path / "export")
    assert "edge_synthesis" in manifest["graphs"]
    assert manifest["learned_codec"]["graph"] == "edge_synthesis"
    _same_ids_without_torch(load_system(str(learned_tiny)), tmp_path / "export", tmp_path)


def test_edge_command_from_an_export_folder_against_a_real_server(
    late_average: tuple[SplitSystem, Path], tmp_path: Path
) -> None:
    _, export = late_average
    checkpoint = export.parent / "checkpoint"
    images = tmp_path / "images"
    images.mkdir()
    for index, rgb in enumerate(MovingSceneSource(num_frames=40).frames()):
        (images / f"{index:04d}.png").write_bytes(_png(rgb))
    run = (
        "from splitcast.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)\n"
    )
    with start_server(str(checkpoint), threads=1) as server:
        result = _run_without_torch(
            run, "edge", "--model", str(export), "--server", server.address,
            "--source", str(images), "--fps", "10", "--wait-for-server", "30",
            "--log", str(tmp_path / "edge.jsonl"), "--summary", str(tmp_path / "summary.json"),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] + summary["skipped"] == 40
    assert summary["combined"] > 0, (summary["link"]["last_error"], result.stderr[-2000:])
    assert summary["local_runtime"].startswith("onnxruntime on CPUExecutionProvider (export")
    log = [json.loads(line) for line in (tmp_path / "edge.jsonl").read_text().splitlines()]
    assert len(log) == summary["frames"]
    assert summary["link"]["connects"] >= 1


def test_an_edge_only_install_names_what_it_lacks(tmp_path: Path) -> None:
    run = "from splitcast.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    serve = _run_without_torch(run, "serve", "--port", "0")
    assert serve.returncode == 2
    assert "needs the full install (pip install 'splitcast[full]')" in serve.stderr
    edge = _run_without_torch(run, "edge", "--model", "default", "--frames", "2")
    assert edge.returncode == 2 and "give --model an export folder" in edge.stderr
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something else"}))
    bad = _run_without_torch(run, "edge", "--model", str(tmp_path), "--frames", "2")
    assert bad.returncode == 2 and f"splitcast-export version {EXPORT_VERSION}" in bad.stderr


def _png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()
