"""Downlink feature codecs: between the remote downlink head and the wire.

A codec turns one frame's features (float32 array [C, H, W]) into bytes plus the metadata
needed to decode them, and back. Decoding validates the payload against the declared shape, so
a corrupt or truncated payload raises `CodecError` instead of yielding garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

MAX_FEATURE_VALUES = 64 * 1024 * 1024


class CodecError(ValueError):
    """A payload that cannot be decoded (corrupt, truncated, or not what it claims to be)."""


@dataclass(frozen=True)
class EncodedTensor:
    """Bytes on the wire and what is needed to decode them."""

    codec: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    payload: bytes


class Codec(Protocol):
    name: str

    def encode(self, features: np.ndarray) -> EncodedTensor: ...

    def decode(self, encoded: EncodedTensor) -> np.ndarray: ...


class RawCodec:
    """No compression: the features as little-endian floats of one width (the reference)."""

    def __init__(self, name: str, dtype: str) -> None:
        self.name = name
        self.dtype = dtype
        self._np_dtype = np.dtype(dtype).newbyteorder("<")

    def encode(self, features: np.ndarray) -> EncodedTensor:
        array = np.ascontiguousarray(features, dtype=self._np_dtype)
        return EncodedTensor(self.name, tuple(array.shape), self.dtype, 1.0, array.tobytes())

    def decode(self, encoded: EncodedTensor) -> np.ndarray:
        if encoded.codec != self.name or encoded.dtype != self.dtype:
            raise CodecError(
                f"payload is {encoded.codec}/{encoded.dtype}, this decoder reads "
                f"{self.name}/{self.dtype}"
            )
        count = _checked_count(encoded.shape)
        expected = count * self._np_dtype.itemsize
        if len(encoded.payload) != expected:
            raise CodecError(
                f"{self.name} payload has {len(encoded.payload)} bytes, shape "
                f"{list(encoded.shape)} needs {expected}"
            )
        array = np.frombuffer(encoded.payload, dtype=self._np_dtype).reshape(encoded.shape)
        if not np.isfinite(array).all():
            raise CodecError(f"{self.name} payload contains non-finite values")
        return array.astype(np.float32)


def _checked_count(shape: tuple[int, ...]) -> int:
    if not shape or any(dim <= 0 for dim in shape):
        raise CodecError(f"invalid tensor shape {list(shape)}")
    count = int(np.prod(shape, dtype=np.int64))
    if count > MAX_FEATURE_VALUES:
        raise CodecError(f"tensor shape {list(shape)} is implausibly large")
    return count


_CODECS: dict[str, Codec] = {
    "raw-fp16": RawCodec("raw-fp16", "float16"),
    "raw-fp32": RawCodec("raw-fp32", "float32"),
}


def get_codec(name: str) -> Codec:
    try:
        return _CODECS[name]
    except KeyError:
        raise CodecError(
            f"unknown codec {name!r}; available: {', '.join(sorted(_CODECS))}"
        ) from None
