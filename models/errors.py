"""Errors a command reports as one line (`splitcast.cli`), importable without PyTorch."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not fit its configuration."""


class WeightsError(RuntimeError):
    """Pretrained weights that are missing or do not fit the architecture."""


class ConfigError(ValueError):
    """A configuration that cannot be used as written. `key` is the path of the field at fault
    (e.g. `("network", "width")`), so that the reader of a YAML file can name its line."""

    def __init__(self, message: str, key: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
