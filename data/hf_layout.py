"""Read the Dedelayed authors' Hugging Face dataset layout from local parquet files.

What the layout holds (from the authors' public README and training code):
- one row is one 15-frame clip of BDD100K driving video at 30 fps;
- `original_{i}`: the frames as captured; the authors evaluate on these;
- `near_lossless_{i}`: lightly compressed frames that the authors train on (the training split
  also has more heavily compressed variants, e.g. `very_lossy_{i}`; any prefix works here);
- `label_{i}`: pseudo-labels used as training targets; `label_hq_{i}`: the labels that the
  authors' evaluation scores against, at the last frame (14);
- labels are single-channel Cityscapes 19-class trainIds, 255 = ignore.

The `datasets` library stores an Image column in parquet as a struct `{bytes, path}`; this reader
uses the embedded `bytes` (what the Hub's parquet files carry) and never touches the network:
fetch the parquet files first with whatever tool you like, then point this reader at them.

Rows become lazy clips. Decoding happens on access; nothing decoded is kept. Encoded column
chunks (one row group of one column) are cached briefly, so reading a clip's frames in turn
decompresses each chunk once while memory stays bounded.
"""

from __future__ import annotations

import io
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from splitcast.data.clips import Clip, ClipDataset, DataError, DatasetMeta

CLIP_FRAMES = 15

_IMAGE_COLUMN = re.compile(r"^(.+)_(\d+)$")


def _pyarrow() -> tuple[ModuleType, ModuleType, ModuleType]:
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.parquet
    except ImportError:
        raise DataError(
            "reading the Hugging Face layout needs pyarrow: pip install 'splitcast[hf]'"
        ) from None
    return pyarrow, pyarrow.compute, pyarrow.parquet


class _ChunkCache:
    """The most recently read column chunks, keyed by (file, row group, column)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._chunks: OrderedDict[tuple[Path, int, str], Any] = OrderedDict()

    def cell(self, file: Path, row_group: int, column: str, row: int) -> dict[str, Any] | None:
        """One image struct as {"bytes", "path"}, or None if the cell is null."""
        key = (file, row_group, column)
        chunk = self._chunks.get(key)
        if chunk is None:
            _, _, pq = _pyarrow()
            chunk = pq.ParquetFile(file).read_row_group(row_group, columns=[column]).column(0)
            self._chunks[key] = chunk
            while len(self._chunks) > self.size:
                self._chunks.popitem(last=False)
        else:
            self._chunks.move_to_end(key)
        return chunk[row].as_py()

    def __getstate__(self) -> dict[str, Any]:
        """Worker processes start with an empty cache rather than a copy of the parent's."""
        return {"size": self.size, "_chunks": OrderedDict()}


@dataclass(frozen=True)
class _RowRef:
    """Where a row lives: its file, row group, index in that group and index in the file."""

    file: Path
    group: int
    row_in_group: int
    row: int


class HfClip:
    """One parquet row of the authors' layout, read and decoded on access."""

    def __init__(
        self,
        name: str,
        ref: _RowRef,
        cache: _ChunkCache,
        frame_columns: list[str],
        label_columns: list[str],
        labelled: tuple[int, ...],
    ) -> None:
        self.name = name
        self.num_frames = len(frame_columns)
        self.labelled = labelled
        self._ref = ref
        self._cache = cache
        self._frame_columns = frame_columns
        self._label_columns = label_columns

    def frame(self, index: int) -> np.ndarray:
        column = self._frame_columns[index]
        data = self._image_bytes(column)
        if data is None:
            raise DataError(f"{self._where(column)} has no embedded image bytes")
        return _decode(data, self._where(column), label=False)

    def label(self, index: int) -> np.ndarray | None:
        if index not in self.labelled:
            return None
        column = self._label_columns[index]
        data = self._image_bytes(column)
        return None if data is None else _decode(data, self._where(column), label=True)

    def _image_bytes(self, column: str) -> bytes | None:
        ref = self._ref
        cell = self._cache.cell(ref.file, ref.group, column, ref.row_in_group)
        return None if cell is None else cell.get("bytes")

    def _where(self, column: str) -> str:
        return f"{self._ref.file} row {self._ref.row} column {column}"


def _decode(data: bytes, where: str, *, label: bool) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if not label:
                return np.asarray(image.convert("RGB"))
            if image.mode not in ("L", "P"):
                raise DataError(
                    f"{where}: a label must be a single-channel image of class ids, "
                    f"got mode {image.mode}"
                )
            return np.asarray(image, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot decode the image in {where}: {exc}") from None


def open_hf_layout(
    path: Path, variant: str = "original", label: str = "label", fps: float = 30.0
) -> ClipDataset:
    """Open every `*.parquet` under `path` (sorted) as clips, one per row.

    `variant` picks the frame columns (`original`, `near_lossless`, ...), `label` the label
    columns (`label` for training targets, `label_hq` for evaluation, as the authors do).
    """
    pa, _, pq = _pyarrow()
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"dataset directory not found: {root}")
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise DataError(f"no *.parquet files under {root}")
    frame_columns = [f"{variant}_{i}" for i in range(CLIP_FRAMES)]
    label_columns = [f"{label}_{i}" for i in range(CLIP_FRAMES)]
    cache = _ChunkCache(size=2 * CLIP_FRAMES)
    clips: list[Clip] = []
    for file in files:
        try:
            parquet = pq.ParquetFile(file)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read parquet file {file}: {exc}") from None
        _check_columns(parquet.schema_arrow, frame_columns + label_columns, file)
        stem = "-".join(file.relative_to(root).with_suffix("").parts)
        row = 0
        for group in range(parquet.metadata.num_row_groups):
            present = [_present(parquet, group, column) for column in label_columns]
            for row_in_group in range(parquet.metadata.row_group(group).num_rows):
                ref = _RowRef(file, group, row_in_group, row)
                labelled = tuple(i for i, mask in enumerate(present) if mask[row_in_group])
                clips.append(
                    HfClip(f"{stem}-{row:06d}", ref, cache, frame_columns, label_columns, labelled)
                )
                row += 1
    meta = DatasetMeta(
        fps=fps,
        info={
            "layout": "huggingface-parquet",
            "source": str(root.resolve()),
            "variant": variant,
            "label": label,
        },
    )
    return ClipDataset(meta, clips, root)


def _check_columns(schema: Any, required: list[str], file: Path) -> None:
    """Every required column must exist and be an image struct with a `bytes` field."""
    pa, _, _ = _pyarrow()
    missing = [name for name in required if schema.get_field_index(name) < 0]
    if missing:
        prefixes = sorted(
            {m.group(1) for m in map(_IMAGE_COLUMN.match, schema.names) if m is not None}
        )
        raise DataError(
            f"{file} lacks columns {', '.join(missing)} "
            f"(image column prefixes present: {', '.join(prefixes) or 'none'})"
        )
    for name in required:
        kind = schema.field(name).type
        if not (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0):
            raise DataError(
                f"{file}: column {name} is {kind}, not an image (a struct with a bytes field)"
            )


def _present(parquet: Any, group: int, column: str) -> np.ndarray:
    """Which rows of a row group hold image bytes in `column`.

    The row group's null count answers this without reading images when it is 0 or all rows;
    only a row group with some missing labels has its label bytes read.
    """
    _, pc, _ = _pyarrow()
    rows = parquet.metadata.row_group(group).num_rows
    stats = _leaf_statistics(parquet.metadata.row_group(group), f"{column}.bytes")
    if stats is not None and stats.has_null_count and stats.null_count in (0, rows):
        return np.full(rows, stats.null_count == 0)
    chunk = parquet.read_row_group(group, columns=[f"{column}.bytes"]).column(0).combine_chunks()
    return pc.is_valid(pc.struct_field(chunk, "bytes")).to_numpy(zero_copy_only=False)


def _leaf_statistics(group_meta: Any, leaf: str) -> Any:
    for j in range(group_meta.num_columns):
        column = group_meta.column(j)
        if column.path_in_schema == leaf:
            return column.statistics
    return None
