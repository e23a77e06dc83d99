"""Every command that takes clips takes the other layouts too: `open_clips` opens the Hugging
Face parquet layout and a Cityscapes sequence split, and training runs on them as they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_readers import cityscapes, hf_dir  # noqa: F401 (fixtures)

from splitcast.data.cityscapes import open_cityscapes_sequences
from splitcast.data.clips import DataError, open_clips
from splitcast.data.hf_layout import open_hf_layout


def _names(dataset) -> list[str]:
    return [clip.name for clip in dataset]


def test_open_clips_opens_the_hugging_face_layout_and_cityscapes(
    hf_dir: Path,  # noqa: F811
    cityscapes: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert _names(open_clips(hf_dir)) == _names(open_hf_layout(hf_dir))
    split = cityscapes / "leftImg8bit_sequence" / "val"
    assert _names(open_clips(split)) == _names(open_cityscapes_sequences(cityscapes, "val"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no meta.json .* no \*.parquet"):
        open_clips(tmp_path / "empty")


def test_training_runs_on_the_hugging_face_layout(hf_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    command = [
        sys.executable, "-m", "splitcast", "train", "--config", "tiny", "--data", str(hf_dir),
        "--out", str(tmp_path / "run"), "--epochs", "1", "--max-steps", "2", "--batch-size", "2",
        "--workers", "0", "--delays", "0-2",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
