"""Result files written whole or not at all: a run stopped mid-write (Ctrl-C, SIGTERM, a full
disk) leaves the previous file or none, never half of one that a reader would choke on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """Write `text` through a temporary file beside `path` and a rename (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON, atomically (a fit's progress record is read back on resume)."""
    write_text(path, json.dumps(data, indent=2) + "\n")
