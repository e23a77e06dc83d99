"""Readers for other layouts (a video plus masks, the authors' HF parquet, Cityscapes sequences)
yield the same clips, and refuse bad input with a message that names the problem."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from splitcast.data.cityscapes import open_cityscapes_sequences
from splitcast.data.clips import DataError, open_clips
from splitcast.data.hf_layout import CLIP_FRAMES, open_hf_layout
from splitcast.data.importer import import_video

W, H = 32, 24


def _frame(k: int, width: int = W, height: int = H) -> np.ndarray:
    """A smooth, distinct RGB frame per index (survives JPEG without large errors)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 6 + k * 9, y * 8 + k * 5, np.full_like(x, 40 + 15 * k)], axis=-1)
    return (rgb % 256).astype(np.uint8)


def _mask(k: int, width: int = W, height: int = H) -> np.ndarray:
    mask = np.full((height, width), k % 19, dtype=np.uint8)
    mask[: height // 3] = 255
    mask[:, : width // 4] = (k + 7) % 19
    return mask


def _save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# ---------------------------------------------------------------- video + masks


def _write_video(path: Path, frames: int, fps: float = 10.0) -> list[np.ndarray]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    rgbs = [_frame(k) for k in range(frames)]
    for rgb in rgbs:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return rgbs


def _decoded(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


@pytest.fixture
def video(tmp_path: Path) -> tuple[Path, Path, list[np.ndarray]]:
    """11 frames at 10 fps; masks for frames 2, 5 and 10 under three zero paddings."""
    path = tmp_path / "drive.avi"
    rgbs = _write_video(path, 11)
    masks = tmp_path / "masks"
    for name, k in (("000002.png", 2), ("5.png", 5), ("0010.png", 10)):
        _save_png(masks / name, _mask(k))
    (masks / "notes.txt").write_text("not a mask, ignored")
    return path, masks, rgbs


def test_import_round_trip_keeps_long_tail(video, tmp_path: Path) -> None:
    path, masks, rgbs = video
    out = tmp_path / "clips"
    dataset = import_video(path, masks, out, clip_len=4, progress=False)
    assert [clip.num_frames for clip in dataset] == [4, 4, 3]  # tail of 3 >= half of 4: kept
    assert [clip.labelled for clip in dataset] == [(2,), (1,), (2,)]
    assert dataset.meta.fps == pytest.approx(10.0)
    assert dataset.meta.info["clip_len"] == 4
    assert dataset.meta.info["source"] == str(path.resolve())
    assert dataset.meta.info["dropped_frames"] == 0
    for clip_index, clip in enumerate(dataset):
        for i in range(clip.num_frames):
            k = clip_index * 4 + i
            frame = clip.frame(i)
            assert frame.shape == (H, W, 3)
            assert np.abs(frame.astype(int) - rgbs[k]).mean() < 8  # MJPG, then JPEG
            label = clip.label(i)
            if k in (2, 5, 10):
                np.testing.assert_array_equal(label, _mask(k))
            else:
                assert label is None
    assert len(open_clips(out)) == 3


def test_import_png_frames_equal_decoded_video_and_drop_short_tail(
    video, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, masks, _ = video
    with caplog.at_level(logging.WARNING, logger="splitcast.data"):
        dataset = import_video(
            path, masks, tmp_path / "clips", clip_len=5, fps=30.0, frame_format="png"
        )
    assert [clip.num_frames for clip in dataset] == [5, 5]  # tail of 1 < half of 5: dropped
    assert "dropped the last 1 frame(s) (1 with masks)" in caplog.text
    assert dataset.meta.info["dropped_frames"] == 1
    assert dataset.meta.fps == 30.0
    decoded = _decoded(path)
    for clip_index, clip in enumerate(dataset):
        for i in range(clip.num_frames):
            np.testing.assert_array_equal(clip.frame(i), decoded[clip_index * 5 + i])


def test_import_errors(video, tmp_path: Path) -> None:
    path, masks, _ = video
    out = tmp_path / "clips"
    with pytest.raises(DataError, match="clip_len must be at least 1"):
        import_video(path, masks, out, clip_len=0, progress=False)
    with pytest.raises(DataError, match="video file not found"):
        import_video(tmp_path / "missing.avi", masks, out, clip_len=4, progress=False)
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(DataError, match=r"opencv cannot open video .*garbage\.avi"):
        import_video(garbage, masks, out, clip_len=4, progress=False)
    with pytest.raises(DataError, match="masks folder not found"):
        import_video(path, tmp_path / "nomasks", out, clip_len=4, progress=False)
    assert not out.exists()
    with pytest.raises(DataError, match="already exists and is not an empty folder"):
        import_video(path, masks, masks, clip_len=4, progress=False)


BAD_IDS = np.full((H, W), 19, np.uint8)
BAD_IDS[0, 0] = 200
ZEROS = np.zeros((H, W), np.uint8)


@pytest.mark.parametrize(
    ("name", "mask", "message"),
    [
        ("3.png", np.zeros((H, W + 8), np.uint8), r"3\.png: label is 40x24 but the frame is 32x24"),
        ("3.png", BAD_IDS, r"mask .*3\.png: unknown class ids \[19, 200\]"),
        ("000099.png", ZEROS, r"beyond the video's last frame 10: 000099\.png"),
        ("frame_3.png", ZEROS, r"frame_3\.png is not named by its frame index"),
    ],
)
def test_import_bad_masks(video, tmp_path: Path, name: str, mask: np.ndarray, message: str) -> None:
    path, masks, _ = video
    _save_png(masks / name, mask)
    out = tmp_path / "clips"
    with pytest.raises(DataError, match=message):
        import_video(path, masks, out, clip_len=4, progress=False)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive.avi", "masks"]  # nothing left


# ---------------------------------------------------------------- HF parquet layout

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def _cell(array: np.ndarray | None, fmt: str = "PNG") -> dict | None:
    return None if array is None else {"bytes": _encoded(array, fmt), "path": None}


def _hf_rows(rows: int, seed: int, missing: dict[tuple[int, str], str] | None = None) -> pa.Table:
    """`rows` clips; `missing[(row, column)]` = "null" (null struct) or "nobytes"."""
    missing = missing or {}
    columns: dict[str, list] = {}
    for i in range(CLIP_FRAMES):
        for prefix, fmt in (("original", "PNG"), ("near_lossless", "JPEG")):
            columns[f"{prefix}_{i}"] = [_cell(_frame(seed + r * 20 + i), fmt) for r in range(rows)]
        for prefix, offset in (("label", 0), ("label_hq", 1)):
            columns[f"{prefix}_{i}"] = [_cell(_mask(seed + r + i + offset)) for r in range(rows)]
    for (row, column), kind in missing.items():
        columns[column][row] = None if kind == "null" else {"bytes": None, "path": "gone.png"}
    return pa.table({name: pa.array(values, type=IMAGE) for name, values in columns.items()})


def _replaced(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


@pytest.fixture(params=[True, False], ids=["stats", "nostats"])
def hf_dir(request, tmp_path: Path) -> Path:
    """Two parquet files (3 rows in row groups of 2, and 2 rows in a subfolder)."""
    root = tmp_path / "hf"
    (root / "validation").mkdir(parents=True)
    first = _hf_rows(3, 0, {(1, "label_3"): "null", (2, "label_14"): "nobytes"})
    pq.write_table(first, root / "a.parquet", row_group_size=2, write_statistics=request.param)
    second = _hf_rows(2, 100, {(0, "label_hq_0"): "null", (1, "label_hq_0"): "null"})
    pq.write_table(second, root / "validation" / "b.parquet", write_statistics=request.param)
    return root


def test_hf_layout_round_trip(hf_dir: Path) -> None:
    dataset = open_hf_layout(hf_dir)
    assert [clip.name for clip in dataset] == [
        "a-000000", "a-000001", "a-000002", "validation-b-000000", "validation-b-000001",
    ]  # fmt: skip
    assert dataset.meta.fps == 30.0 and dataset.meta.info["variant"] == "original"
    everything = tuple(range(CLIP_FRAMES))
    assert dataset.clips[0].labelled == everything
    assert dataset.clips[1].labelled == tuple(i for i in everything if i != 3)
    assert dataset.clips[2].labelled == everything[:-1]
    clip = dataset.clips[2]
    assert clip.num_frames == CLIP_FRAMES
    np.testing.assert_array_equal(clip.frame(7), _frame(0 + 2 * 20 + 7))
    np.testing.assert_array_equal(clip.label(7), _mask(0 + 2 + 7))
    assert clip.label(14) is None
    assert dataset.clips[1].label(3) is None
    seed_b = dataset.clips[4]
    np.testing.assert_array_equal(seed_b.frame(0), _frame(100 + 20))
    np.testing.assert_array_equal(seed_b.label(14), _mask(100 + 1 + 14))


def test_hf_layout_variant_and_eval_labels(hf_dir: Path) -> None:
    dataset = open_hf_layout(hf_dir, variant="near_lossless", label="label_hq", fps=15.0)
    assert dataset.meta.fps == 15.0
    assert dataset.clips[0].labelled == tuple(range(CLIP_FRAMES))
    assert dataset.clips[3].labelled == dataset.clips[4].labelled == tuple(range(1, CLIP_FRAMES))
    frame = dataset.clips[0].frame(5)
    assert np.abs(frame.astype(int) - _frame(5)).mean() < 4  # JPEG
    np.testing.assert_array_equal(dataset.clips[0].label(5), _mask(5 + 1))


def test_hf_layout_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="dataset directory not found"):
        open_hf_layout(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \*\.parquet files"):
        open_hf_layout(tmp_path / "empty")

    table = _hf_rows(2, 0)
    partial = tmp_path / "partial"
    partial.mkdir()
    pq.write_table(table.drop_columns(["label_hq_3", "label_hq_9"]), partial / "p.parquet")
    with pytest.raises(DataError, match=r"lacks columns label_hq_3, label_hq_9"):
        open_hf_layout(partial, label="label_hq")
    with pytest.raises(
        DataError, match=r"lacks columns raw_0, .*prefixes present: .*near_lossless"
    ):
        open_hf_layout(partial, variant="raw")

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    pq.write_table(_replaced(table, "original_0", pa.array(["x", "y"])), wrong / "w.parquet")
    with pytest.raises(DataError, match="column original_0 is string, not an image"):
        open_hf_layout(wrong)

    broken = tmp_path / "broken"
    broken.mkdir()
    cells = table.column("original_4").to_pylist()
    cells[1] = {"bytes": b"definitely not a PNG", "path": None}
    table = _replaced(table, "original_4", pa.array(cells, type=IMAGE))
    table = _replaced(table, "original_5", pa.array([None, None], type=IMAGE))
    pq.write_table(table, broken / "b.parquet")
    dataset = open_hf_layout(broken)
    assert dataset.clips[0].frame(4).shape == (H, W, 3)
    with pytest.raises(DataError, match=r"b\.parquet row 1 column original_4"):
        dataset.clips[1].frame(4)
    with pytest.raises(DataError, match=r"row 0 column original_5 has no embedded image bytes"):
        dataset.clips[0].frame(5)

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "j.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"cannot read parquet file .*j\.parquet"):
        open_hf_layout(tmp_path / "junk")

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataError, match=r"pip install 'splitcast\[hf\]'"):
        open_hf_layout(partial)


# ---------------------------------------------------------------- Cityscapes sequences

CW, CH = 16, 8
FRAMES = "leftImg8bit_sequence"


def _snippet(root: Path, split: str, city: str, seq: int, first: int) -> None:
    for number in range(first, first + 30):
        name = f"{city}_{seq:06d}_{number:06d}_leftImg8bit.png"
        _save_png(root / FRAMES / split / city / name, _frame(number, CW, CH))


def _gt(root: Path, city: str, seq: int, number: int, kind: str, array: np.ndarray) -> Path:
    name = f"{city}_{seq:06d}_{number:06d}_gtFine_{kind}.png"
    return _save_png(root / "gtFine" / "val" / city / name, array)


@pytest.fixture
def cityscapes(tmp_path: Path) -> Path:
    """aachen: one snippet; frankfurt seq 1: two snippets, one labelled with labelIds only."""
    root = tmp_path / "cityscapes"
    _snippet(root, "val", "aachen", 0, 0)
    _snippet(root, "val", "frankfurt", 1, 275)
    _snippet(root, "val", "frankfurt", 1, 556)
    _gt(root, "aachen", 0, 19, "labelTrainIds", _mask(3, CW, CH))
    _gt(root, "aachen", 0, 19, "labelIds", np.zeros((CH, CW), np.uint8))  # trainIds win
    label_ids = np.array([[7, 26, 0, 33, 4, 24, 23, 31] * 2] * CH, dtype=np.uint8)
    _gt(root, "frankfurt", 1, 294, "labelIds", label_ids)
    _gt(root, "frankfurt", 1, 9999, "labelIds", label_ids)  # no such sequence frame: ignored
    return root


def test_cityscapes_round_trip(cityscapes: Path) -> None:
    dataset = open_cityscapes_sequences(cityscapes)
    assert dataset.meta.fps == 17.0
    assert [clip.name for clip in dataset] == [
        "aachen_000000_000000", "frankfurt_000001_000275", "frankfurt_000001_000556",
    ]  # fmt: skip
    assert [clip.num_frames for clip in dataset] == [30, 30, 30]
    assert [clip.labelled for clip in dataset] == [(19,), (19,), ()]
    aachen, frankfurt, unlabelled = dataset.clips
    np.testing.assert_array_equal(aachen.frame(5), _frame(5, CW, CH))
    np.testing.assert_array_equal(frankfurt.frame(0), _frame(275, CW, CH))
    np.testing.assert_array_equal(aachen.label(19), _mask(3, CW, CH))
    assert aachen.label(18) is None and unlabelled.label(19) is None
    mapped = np.array([[0, 13, 255, 18, 255, 11, 10, 16] * 2] * CH, dtype=np.uint8)
    np.testing.assert_array_equal(frankfurt.label(19), mapped)


def test_cityscapes_errors(cityscapes: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Cityscapes root not found"):
        open_cityscapes_sequences(tmp_path / "absent")
    with pytest.raises(DataError, match=r"train not found \(splits present: val\)"):
        open_cityscapes_sequences(cityscapes, split="train")

    bad_ids = _gt(cityscapes, "frankfurt", 1, 560, "labelTrainIds", np.full((CH, CW), 40, np.uint8))
    message = r"frankfurt_000001_000560_gtFine_labelTrainIds\.png: unknown class ids \[40\]"
    with pytest.raises(DataError, match=message):
        open_cityscapes_sequences(cityscapes).clips[2].label(4)

    _gt(cityscapes, "aachen", 0, 19, "labelTrainIds", np.zeros((CH * 2, CW), np.uint8))
    message = r"aachen_000000_000019_gtFine_labelTrainIds\.png is 16x16 but its frame .* is 16x8"
    with pytest.raises(DataError, match=message):
        open_cityscapes_sequences(cityscapes)
    bad_ids.unlink()

    (cityscapes / FRAMES / "val" / "aachen" / "aachen_000000_000005_leftImg8bit.png").unlink()
    with pytest.raises(DataError, match=r"aachen_000000 has gaps in frame numbers.*missing 000005"):
        open_cityscapes_sequences(cityscapes)


def test_import_command_line(video, tmp_path: Path) -> None:
    path, masks, _ = video
    out = tmp_path / "cli-import"
    command = [sys.executable, "-m", "splitcast", "data", "import", "--video", str(path)]
    result = subprocess.run(
        [*command, "--masks", str(masks), "--out", str(out), "--clip-len", "5"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout
    assert len(open_clips(out)) >= 2
    missing = subprocess.run(
        [
            *command[:-1], str(tmp_path / "none.mp4"), "--masks", str(masks),
            "--out", str(tmp_path / "x"), "--clip-len", "5",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_import_with_own_class_names(video, tmp_path: Path) -> None:
    path, _, _ = video
    masks = tmp_path / "two-class"
    for k in (1, 4):
        mask = np.zeros((H, W), dtype=np.uint8)
        mask[H // 2 :, W // 2 :] = 1
        mask[0] = 255
        _save_png(masks / f"{k}.png", mask)
    out = tmp_path / "own"
    dataset = import_video(path, masks, out, 4, progress=False, classes=["background", "person"])
    assert dataset.meta.classes == ("background", "person")
    assert len(dataset.meta.palette) == 2 and len(set(dataset.meta.palette)) == 2
    assert open_clips(out).meta.num_classes == 2
    _save_png(masks / "7.png", np.full((H, W), 2, dtype=np.uint8))
    with pytest.raises(DataError, match=r"unknown class ids \[2\]"):
        import_video(path, masks, tmp_path / "bad", clip_len=4, progress=False, classes=["a", "b"])
    with pytest.raises(DataError, match="distinct"):
        import_video(path, masks, tmp_path / "dup", clip_len=4, progress=False, classes=["a", "a"])
