"""`splitcast export`: fixed-shape graphs that pass onnx's checker and match PyTorch, and a
manifest that describes them truthfully."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from splitcast.export import export_checkpoint_graphs
from splitcast.models.answers import AnswerUse
from splitcast.models.checkpoint import save_checkpoint
from splitcast.models.combiners import LateAverage
from splitcast.models.registry import build


def _late_average_tiny(folder: Path) -> Path:
    system = build("tiny").with_combiner(LateAverage.name)
    uses = [AnswerUse(0.5, 3, 0.2), AnswerUse(0.5, 3, 0.2), AnswerUse(0.4, 1, 0.0)]
    system = dataclasses.replace(system, config=system.config.with_policy(LateAverage.name, uses))
    save_checkpoint(system, folder, {"note": "untrained tiny, late average"})
    return folder


def test_export_writes_checked_graphs_and_a_truthful_manifest(tmp_path: Path) -> None:
    manifest = export_checkpoint_graphs(str(_late_average_tiny(tmp_path / "ckpt")), tmp_path / "x")
    assert json.loads((tmp_path / "x" / "manifest.json").read_text()) == manifest
    assert manifest["combiner"] == "late_average" and manifest["context_frames"] == 4
    assert [entry["graph"] for entry in manifest["policy"]] == [
        "edge_combine_0", "edge_combine_0", "edge_combine_1",
    ]  # fmt: skip
    assert set(manifest["graphs"]) == {
        "edge_local", "remote_encoder", "remote_answer", "edge_combine_0", "edge_combine_1",
    }  # fmt: skip
    for name, graph in manifest["graphs"].items():
        path = tmp_path / "x" / graph["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == graph["sha256"]
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        assert graph["max_abs_difference_from_pytorch"] <= 1e-3, name
    answer = manifest["graphs"]["remote_answer"]
    assert [o["name"] for o in answer["outputs"]] == [t["name"] for t in manifest["answer"]]
    assert [o["shape"][1:] for o in answer["outputs"]] == [t["shape"] for t in manifest["answer"]]
    # the edge's local graph, run here on a frame of our own, against the PyTorch model
    system = build("tiny")
    frame = torch.rand(1, 3, *manifest["local_size"], generator=torch.Generator().manual_seed(5))
    session = ort.InferenceSession(str(tmp_path / "x" / "edge_local.onnx"))
    (got,) = session.run(None, {"frame": frame.numpy()})
    with torch.inference_mode():
        expected = system.local(frame).numpy()
    assert np.abs(got - expected).max() <= 1e-3


def test_export_command_line_for_a_feature_fusion_model(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "splitcast", "export", "--checkpoint", "tiny"]
    result = subprocess.run(
        [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["combiner"] == "feature_fusion"
    fused = manifest["graphs"]["edge_fused"]
    assert [value["name"] for value in fused["inputs"]] == ["frame", "features", "gain"]
    assert "wrote 4 graphs" in result.stdout
