"""YAML read with one-line syntax errors: PyYAML's own message spans several lines with a
caret drawing, which a command's error line cannot carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlSyntaxError(ValueError):
    """The file, line, column and problem of a YAML document that does not parse."""


def parse_yaml(text: str | bytes, source: Path) -> Any:
    """The document in `text` (read from `source`); a syntax error is a `YamlSyntaxError`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = "" if mark is None else f" line {mark.line + 1} column {mark.column + 1}"
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        started = f" ({context} from line {start.line + 1})" if context and start else ""
        raise YamlSyntaxError(f"{source}{where}: not valid YAML: {problem}{started}") from None
