"""Downlink feature codecs: between the remote downlink head and the wire.

A codec turns one frame's features (float32 array [C, H, W]) into bytes plus the metadata
needed to decode them, and back. Decoding validates the payload against the declared shape
(and, for the entropy-coded codec, a checksum of the decoded symbols), so a corrupt or truncated
payload raises `CodecError` instead of yielding garbage. Nothing here needs PyTorch (the
edge-only install decodes with it); the learned codec is given its transforms as functions.

- `raw-fp16` / `raw-fp32`: the features as floats (the reference);
- `int8-zstd`: per-channel scale, uniform 8-bit quantisation, zstandard;
- `learned`: the checkpoint's `FeatureBottleneck` symbols, range-coded with `constriction`
  using the integer frequency tables stored in the checkpoint;
- `logprobs-u4-zstd`: class log-probabilities (the late-average answer, `models.combiners`)
  floored at `LOG_PROBABILITY_FLOOR` on 16 levels, zstandard: about 2.2-2.7 kB for 19 x 32 x 64,
  as good as sending them exact (the pooling needs the small probabilities, which 16 linear
  levels of probability round to 0).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import constriction
import numpy as np
import zstandard

from splitcast.models.codec_names import (
    CODEC_NAMES,
    LOG_PROBABILITY_FLOOR,
    PROBABILITY_CODEC,
    STATELESS_CODECS,
)

if TYPE_CHECKING:
    from splitcast.models.bottleneck import FeatureBottleneck

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


def _decompress(
    decompressor: zstandard.ZstdDecompressor, encoded: EncodedTensor, expected: int
) -> bytes:
    """The zstandard payload's bytes, exactly `expected` of them, or CodecError."""
    try:
        raw = decompressor.decompress(encoded.payload, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise CodecError(f"{encoded.codec} payload does not decompress: {exc}") from None
    if len(raw) != expected:
        raise CodecError(
            f"{encoded.codec} payload holds {len(raw)} bytes, shape {list(encoded.shape)} "
            f"needs {expected}"
        )
    return raw


def _checked_count(shape: tuple[int, ...]) -> int:
    if not shape or any(dim <= 0 for dim in shape):
        raise CodecError(f"invalid tensor shape {list(shape)}")
    count = int(np.prod(shape, dtype=np.int64))
    if count > MAX_FEATURE_VALUES:
        raise CodecError(f"tensor shape {list(shape)} is implausibly large")
    return count


class Int8ZstdCodec:
    """Per-channel scale (max |x| / 127), 8-bit symmetric quantisation, zstandard.

    Payload: the C float32 scales, then the int8 values, compressed together.
    """

    name = "int8-zstd"

    def __init__(self, level: int = 3) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()

    def encode(self, features: np.ndarray) -> EncodedTensor:
        array = np.asarray(features, dtype=np.float32)
        peak = np.abs(array.reshape(array.shape[0], -1)).max(axis=1)
        scales = np.where(peak > 0, peak / 127.0, 1.0).astype("<f4")
        values = np.clip(np.round(array / scales[:, None, None]), -127, 127).astype(np.int8)
        raw = scales.tobytes() + values.tobytes()
        return EncodedTensor(
            self.name, tuple(array.shape), "int8", 1.0, self._compressor.compress(raw)
        )

    def decode(self, encoded: EncodedTensor) -> np.ndarray:
        _check_codec(encoded, self.name)
        count = _checked_count(encoded.shape)
        if len(encoded.shape) != 3:
            raise CodecError(f"int8-zstd needs a [C, H, W] shape, got {list(encoded.shape)}")
        channels = encoded.shape[0]
        expected = 4 * channels + count
        raw = _decompress(self._decompressor, encoded, expected)
        scales = np.frombuffer(raw[: 4 * channels], dtype="<f4")
        if not (np.isfinite(scales).all() and (scales > 0).all()):
            raise CodecError("int8-zstd payload has invalid channel scales")
        values = np.frombuffer(raw[4 * channels :], dtype=np.int8).reshape(encoded.shape)
        return (values.astype(np.float32) * scales[:, None, None]).astype(np.float32)


class ProbabilityCodec:
    """Log-probabilities in [`LOG_PROBABILITY_FLOOR`, 0] rounded to `levels` + 1 steps, one
    byte each, zstandard.

    Most pixels are confident, so the bytes are long runs of 0 and `levels`; the decoder
    rejects any value above `levels`.
    """

    name = PROBABILITY_CODEC
    levels = 15

    def __init__(self, level: int = 10) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()

    def encode(self, features: np.ndarray) -> EncodedTensor:
        array = np.clip(np.asarray(features, dtype=np.float32), LOG_PROBABILITY_FLOOR, 0.0)
        steps = np.round(array * (self.levels / LOG_PROBABILITY_FLOOR)).astype(np.uint8)
        payload = self._compressor.compress(steps.tobytes())
        step = LOG_PROBABILITY_FLOOR / self.levels
        return EncodedTensor(self.name, tuple(array.shape), "uint8", step, payload)

    def decode(self, encoded: EncodedTensor) -> np.ndarray:
        _check_codec(encoded, self.name)
        count = _checked_count(encoded.shape)
        raw = _decompress(self._decompressor, encoded, count)
        steps = np.frombuffer(raw, dtype=np.uint8).reshape(encoded.shape)
        if steps.max(initial=0) > self.levels:
            raise CodecError(f"{self.name} payload has values above {self.levels}")
        return steps.astype(np.float32) * np.float32(LOG_PROBABILITY_FLOOR / self.levels)


class LearnedCodec:
    """A learned bottleneck's symbols, range-coded with its integer frequency tables.

    Payload: CRC-32 of the symbols (4 bytes, little-endian), then the range coder's 32-bit
    words. The entropy models are built from the integer tables (exact in float64), so encoder
    and decoder on any machine agree bit for bit. The transforms come as functions: the
    checkpoint's `FeatureBottleneck` in PyTorch, or its exported synthesis graph on an edge
    without PyTorch (which only decodes: `symbols_of` None).
    """

    name = "learned"

    def __init__(
        self,
        tables: np.ndarray,
        features_of: Callable[[np.ndarray], np.ndarray],
        symbols_of: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """`tables`: integer frequencies [width, alphabet]; `features_of`: symbols
        [width, h, w] -> features [C, H, W]; `symbols_of`: the reverse (for encoding)."""
        tables = np.asarray(tables, dtype=np.float64)
        if tables.ndim != 2 or not (tables > 0).all():
            raise CodecError(
                "the bottleneck has no integer probability tables; call finalize_tables() "
                "after training"
            )
        self.width = tables.shape[0]
        self.features_of = features_of
        self.symbols_of = symbols_of
        self._models = [
            constriction.stream.model.Categorical(row / row.sum(), perfect=False) for row in tables
        ]

    def encode(self, features: np.ndarray) -> EncodedTensor:
        if self.symbols_of is None:
            raise CodecError("this learned codec only decodes (it has no analysis transform)")
        return self.encode_symbols(self.symbols_of(features).astype(np.int32))

    def encode_symbols(self, symbols: np.ndarray) -> EncodedTensor:
        """Range-code integer symbols [width, h, w] (each in [0, alphabet))."""
        encoder = constriction.stream.queue.RangeEncoder()
        for channel, model in zip(symbols, self._models, strict=True):
            encoder.encode(np.ascontiguousarray(channel.ravel(), dtype=np.int32), model)
        words = encoder.get_compressed().astype("<u4")
        checksum = struct.pack("<I", zlib.crc32(symbols.astype(np.uint8).tobytes()))
        return EncodedTensor(
            self.name, tuple(symbols.shape), "uint8", 1.0, checksum + words.tobytes()
        )

    def decode_symbols(self, encoded: EncodedTensor) -> np.ndarray:
        """Integer symbols [width, h, w] from a payload; raises CodecError when it is corrupt."""
        _check_codec(encoded, self.name)
        count = _checked_count(encoded.shape)
        if len(encoded.shape) != 3 or encoded.shape[0] != self.width:
            raise CodecError(
                f"learned payload shape {list(encoded.shape)} does not fit this model's "
                f"{self.width}-channel bottleneck"
            )
        payload = encoded.payload
        if len(payload) < 4 or len(payload) % 4:
            raise CodecError(f"learned payload of {len(payload)} bytes is truncated")
        (checksum,) = struct.unpack("<I", payload[:4])
        words = np.frombuffer(payload[4:], dtype="<u4").astype(np.uint32)
        per_channel = count // self.width
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            symbols = np.stack(
                [decoder.decode(model, per_channel) for model in self._models]
            ).reshape(encoded.shape)
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise CodecError(f"learned payload does not decode: {exc}") from None
        if zlib.crc32(symbols.astype(np.uint8).tobytes()) != checksum:
            raise CodecError("learned payload is corrupt (checksum of the symbols differs)")
        return symbols

    def decode(self, encoded: EncodedTensor) -> np.ndarray:
        return self.features_of(self.decode_symbols(encoded).astype(np.int64))


def _check_codec(encoded: EncodedTensor, name: str) -> None:
    if encoded.codec != name:
        raise CodecError(f"payload is {encoded.codec}, this decoder reads {name}")


def get_codec(name: str, bottleneck: FeatureBottleneck | None = None) -> Codec:
    """A codec by name; `learned` needs the checkpoint's trained bottleneck."""
    if name in ("raw-fp16", "raw-fp32"):
        return RawCodec(name, "float16" if name == "raw-fp16" else "float32")
    if name == "int8-zstd":
        return Int8ZstdCodec()
    if name == PROBABILITY_CODEC:
        return ProbabilityCodec()
    if name == "learned":
        if bottleneck is None:
            raise CodecError(
                "this checkpoint has no learned codec; train one with "
                "`splitcast train --codec learned` or choose one of "
                f"{', '.join(STATELESS_CODECS)}"
            )
        bottleneck.eval()
        return LearnedCodec(
            bottleneck.tables.numpy(), bottleneck.features_of, bottleneck.symbols_of
        )
    raise CodecError(f"unknown codec {name!r}; available: {', '.join(CODEC_NAMES)}")


def codec_set(bottleneck: FeatureBottleneck | None) -> dict[str, Codec]:
    """Every codec a receiver with this bottleneck (or none) can decode, by name."""
    learned = bottleneck is not None and bottleneck.finalized
    names = [n for n in CODEC_NAMES if learned or n != "learned"]
    return {name: get_codec(name, bottleneck) for name in names}
