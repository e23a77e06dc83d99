"""Where models run and in what precision: `--device auto|cpu|cuda|cuda:N` and `--precision
fp32|bf16|fp16`, resolved once, with a clear error for what this machine lacks (never a
silent fall back to the CPU)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import fields, is_dataclass, replace
from typing import TypeVar

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
CPU = torch.device("cpu")
_AUTOCAST_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
T = TypeVar("T")


class DeviceError(ValueError):
    """A device or precision this machine cannot give; the message names what is missing."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: the first CUDA device when there is one, else the CPU; `cuda[:N]` must exist."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {name!r} asked for, but CUDA is not available here (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use --device cpu"
        )
    count = torch.cuda.device_count()
    index = 0 if device.index is None else device.index
    if index >= count:
        raise DeviceError(f"device {name!r} asked for, but this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


def device_for_rank(name: str, world: int) -> torch.device:
    """Under torchrun with CUDA, each process takes the GPU of its LOCAL_RANK."""
    device = resolve_device(name)
    if device.type == "cuda" and world > 1:
        device = resolve_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def resolve_precision(name: str | None, device: torch.device) -> str:
    """The default is bf16 on CUDA and fp32 on the CPU; reduced precision is CUDA autocast.
    fp32 on CUDA turns TF32 off (PyTorch's convolutions use it by default), so that fp32 means
    what it says and agrees with the CPU."""
    precision = name or ("bf16" if device.type == "cuda" else "fp32")
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if device.type == "cpu" and precision != "fp32":
        raise DeviceError(f"precision {precision} is CUDA autocast; the CPU runs fp32")
    if device.type == "cuda" and precision == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return precision


def placement(device: str = "auto", precision: str | None = None) -> tuple[torch.device, str]:
    """`resolve_device` and `resolve_precision` in one: what a command's flags ask for."""
    where = resolve_device(device)
    return where, resolve_precision(precision, where)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to `precision` on `device` (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_TYPES[precision])


def moved(batch: T, device: torch.device) -> T:
    """A dataclass batch with its tensors (and lists of tensors) on `device`; the batch itself
    on the CPU."""
    if device.type == "cpu" or not is_dataclass(batch):
        return batch
    changes = {}
    for field in fields(batch):
        value = getattr(batch, field.name)
        if isinstance(value, torch.Tensor):
            changes[field.name] = value.to(device, non_blocking=True)
        elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            changes[field.name] = [item.to(device, non_blocking=True) for item in value]
    return replace(batch, **changes)
