"""Errors a command reports as one line (`splitcast.cli`), importable without PyTorch."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not fit its configuration."""


class WeightsError(RuntimeError):
    """Pretrained weights that are missing or do not fit the architecture."""
