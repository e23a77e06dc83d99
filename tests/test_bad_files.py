"""Damaged checkpoints, bad YAML configurations and pickles that would run code end a command
with one line naming the file and what is wrong, and nothing in a refused pickle executes
(issue 29). Three cases go through the CLI, started together since each pays for importing
torch; the others call the loaders."""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from splitcast.data.build import build_split
from splitcast.data.scene.generator import SceneSettings
from splitcast.edge.exported import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    MANIFEST,
    ExportError,
    read_manifest,
)
from splitcast.models.checkpoint import (
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    load_history,
    load_training_state,
    save_checkpoint,
    stored_in_half,
    system_state,
)
from splitcast.models.errors import ConfigError
from splitcast.models.registry import build, get_config, load_config

SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux
BAD_YAML = "base: tiny\nname: x\nremote_size: [96, 192\nlocal_size: [64, 128]\n"


class RunsCode:
    """Unpickling this runs a shell command that creates `marker`, as an attacker's file would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _state(model: object) -> dict[str, object]:
    """A training state as `Trainer._save` writes it, with `model` as its weights."""
    counter = torch.tensor(1)
    return {"epoch": counter, "step": counter, "model": model, "optimizer": {}}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good") / "tiny"
    save_checkpoint(build("tiny"), folder, {}, half=False)
    return folder


def _copy(good: Path, folder: Path) -> Path:
    shutil.copytree(good, folder)
    return folder


def _damaged_weights(good: Path, folder: Path, change: str) -> Path:
    data = bytearray((good / WEIGHTS_FILE).read_bytes())
    if change == "truncated":
        data = data[: len(data) // 2]
    elif change == "header_flipped":
        data[10] ^= 0xFF  # a byte of the header's JSON, no longer UTF-8
    else:
        data[5] ^= 0x01  # the header's length: far beyond the file
    _copy(good, folder).joinpath(WEIGHTS_FILE).write_bytes(bytes(data))
    return folder


@pytest.fixture(scope="module")
def cli_runs(
    tmp_path_factory: pytest.TempPathFactory, good: Path
) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    """Per case, the finished command and the file at fault: a truncated checkpoint given to
    `edge`, an invalid YAML configuration to `train` and a checkpoint folder whose training
    state would run code to `train --resume` (its marker file is `pwned` beside it)."""
    root = tmp_path_factory.mktemp("cli")
    truncated = _damaged_weights(good, root / "truncated", "truncated")
    (root / "bad.yaml").write_text(BAD_YAML)
    data = root / "data" / "train"
    build_split(
        data, "train", clips=1, frames=14, settings=SceneSettings(height=64), progress=False
    )
    evil = _copy(good, root / "evil")
    torch.save(_state(RunsCode(root / "pwned")), evil / "training_state.pt")
    train = ["train", "--data", str(data), "--workers", "0", "--class-weighting", "none"]
    cases = {
        "edge": (["edge", "--model", str(truncated), "--frames", "3"], truncated / WEIGHTS_FILE),
        "yaml": ([*train, "--config", str(root / "bad.yaml"), "--out", str(root / "run")],
                 root / "bad.yaml"),
        "pickle": ([*train, "--resume", "--out", str(evil)], evil / "training_state.pt"),
    }  # fmt: skip
    started = {
        name: subprocess.Popen(
            [sys.executable, "-m", "splitcast", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, _) in cases.items()
    }
    runs = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=180)
        runs[name] = (
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
            cases[name][1],
        )
    return runs


@pytest.mark.parametrize(
    ("case", "command", "problem"),
    [
        ("edge", "edge", "is damaged or truncated: "),
        ("yaml", "train", "line 4 column 11: not valid YAML: expected ',' or ']', but got ':'"),
        ("pickle", "train", f"was refused: unpickling it would call {SYSTEM}"),
    ],
)
def test_a_bad_file_ends_the_command_with_one_line_naming_it(
    cli_runs: dict[str, tuple[subprocess.CompletedProcess[str], Path]],
    case: str,
    command: str,
    problem: str,
) -> None:
    run, path = cli_runs[case]
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.splitlines() == [run.stderr.strip()], run.stderr[-2000:]
    assert run.stderr.startswith(f"splitcast {command}: error: ")
    assert path.name in run.stderr and str(path.parent) in run.stderr and problem in run.stderr
    assert "Traceback" not in run.stderr and "weights_only" not in run.stderr
    assert not (cli_runs["pickle"][1].parent.parent / "pwned").exists()


@pytest.mark.parametrize("change", ["truncated", "header_flipped", "length_flipped"])
def test_damaged_weights_are_named_as_damaged(good: Path, tmp_path: Path, change: str) -> None:
    folder = _damaged_weights(good, tmp_path / change, change)
    expected = rf"^model\.safetensors in {re.escape(str(folder))} is damaged or truncated: \S"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match=expected):
        stored_in_half(folder)


def test_weights_that_do_not_fit_name_the_tensor(good: Path, tmp_path: Path) -> None:
    stored = load_file(str(good / WEIGHTS_FILE))
    name = sorted(stored)[0]
    missing = _copy(good, tmp_path / "missing")
    save_file({k: v for k, v in stored.items() if k != name}, str(missing / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=rf"does not fit tiny: missing \['{name}'\]$"):
        load_checkpoint(missing)
    shape = _copy(good, tmp_path / "shape")
    save_file({**stored, name: torch.zeros(3, 3)}, str(shape / WEIGHTS_FILE))
    wanted = list(stored[name].shape)
    with pytest.raises(CheckpointError, match=re.escape(f"{name} is [3, 3], the model's {wanted}")):
        load_checkpoint(shape)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"config": {"name": "tiny",,}', r"is damaged \(not JSON\): Expecting property name"),
        ("[1, 2]", r"has no configuration"),
        ('{"config": {"name": "x", "architecture": "tiny", "flux": 1}, "packaged_prefixes": []}',
         r": its configuration: unknown model field: flux;"),
    ],
)  # fmt: skip
def test_a_bad_meta_json_is_named(good: Path, tmp_path: Path, text: str, problem: str) -> None:
    folder = _copy(good, tmp_path / "checkpoint")
    (folder / "meta.json").write_text(text)
    with pytest.raises(
        CheckpointError, match=rf"^meta\.json in {re.escape(str(folder))}.*{problem}"
    ):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (BAD_YAML, " line 4 column 11: not valid YAML: expected ',' or ']', but got ':' "
         "(while parsing a flow sequence from line 3)"),
        ("base: tiny\nname: x\nflux: 3\n", " line 3: unknown model field: flux; known: "),
        ("base: tiny\nname: x\ncontext_frames: four\n",
         " line 3: model field context_frames must be int, not 'four'"),
        ("base: tiny\nname: x\nremote_size: [96]\n",
         " line 3: model field remote_size must be tuple[int, int], not [96]"),
        ("base: tiny\nname: x\nnetwork:\n  seed: 1\n  width: wide\n",
         " line 5: tiny setting width must be int, not 'wide'"),
        ("base: tiny\nname: x\npolicy:\n  feature_fusion:\n  - {weight: 1}\n  - {weight: one}\n",
         " line 6: feature_fusion policy field weight must be float, not 'one'"),
        ("base: huge\n", " line 1: unknown base 'huge'"),
        ("base: tiny\nname: x\narchitecture: lite\n", ": unknown lite setting: local_widths"),
        ("- a\n- b\n", " must hold a mapping of model config fields"),
    ],
)  # fmt: skip
def test_a_bad_yaml_config_names_the_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}{problem}")
    assert "\n" not in str(raised.value)


def test_the_marker_pickle_runs_code_when_unpickled_unsafely(tmp_path: Path) -> None:
    """The payload the refusals below are tested with really runs a command."""
    pickle.loads(pickle.dumps(RunsCode(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()


def test_a_training_state_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    zipped, bare = tmp_path / "zipped.pt", tmp_path / "bare.pt"
    torch.save(_state(RunsCode(marker)), zipped)
    bare.write_bytes(pickle.dumps(_state(RunsCode(marker))))
    system = build("tiny")
    with pytest.raises(CheckpointError) as raised:
        load_training_state(zipped, system)
    assert str(raised.value) == (
        f"zipped.pt in {tmp_path} was refused: unpickling it would call {SYSTEM}, which can "
        "run any code; nothing in it was loaded"
    )
    with pytest.raises(CheckpointError, match=r"^bare\.pt in .* was refused: it holds more than"):
        load_training_state(bare, system)
    assert not marker.exists()


def test_a_damaged_or_foreign_training_state_is_named(tmp_path: Path) -> None:
    system = build("tiny")
    path = tmp_path / "training_state.pt"
    torch.save(_state(system_state(system)), path)
    assert int(load_training_state(path, system)["step"]) == 1
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"training_state\.pt in .* is damaged or truncated"):
        load_training_state(path, system)
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match=r"is not a training state \(it needs model, "):
        load_training_state(path, system)
    narrow = build(get_config("tiny").with_network(width=16))
    torch.save(_state(system_state(narrow)), path)
    with pytest.raises(
        CheckpointError, match=r"does not fit tiny \(saved for another --config\?\)"
    ):
        load_training_state(path, system)


def test_a_damaged_history_is_named(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    assert load_history(path) == []
    for damaged in ('[{"epoch": 1', '{"epoch": 1}', "\udcff"):
        path.write_text(damaged, errors="surrogateescape")
        with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))} is damaged"):
            load_history(path)


@pytest.mark.parametrize(
    "manifest",
    ["[]", '{"format": "splitcast-export", "version": 1}', "{not json"],
    ids=["not-an-object", "no-graphs", "not-json"],
)
def test_a_damaged_export_manifest_is_a_clear_error(tmp_path: Path, manifest: str) -> None:
    current = f'"{EXPORT_FORMAT}", "version": {json.dumps(EXPORT_VERSION)}'
    (tmp_path / MANIFEST).write_text(manifest.replace('"splitcast-export", "version": 1', current))
    with pytest.raises(ExportError, match=re.escape(str(tmp_path / MANIFEST))):
        read_manifest(tmp_path)
