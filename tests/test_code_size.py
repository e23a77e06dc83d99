"""Modules stay small enough to read in one sitting (functions are kept small by ruff's C901 and
PLR0915, configured in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
GENERATED = ("_pb2.py", "_pb2_grpc.py")


def test_no_module_is_longer_than_400_lines() -> None:
    sources = [
        path
        for path in ROOT.rglob("*.py")
        if not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
        and not path.name.endswith(GENERATED)
        and "build" not in path.relative_to(ROOT).parts
    ]
    assert len(sources) > 50, "the check must see the project's modules"
    long = {
        str(path.relative_to(ROOT)): count
        for path in sources
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
