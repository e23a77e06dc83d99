"""Downlink codecs: exact round trips for the raw codecs, clear errors for bad payloads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from splitcast.models.codec import CodecError, get_codec


def test_raw_fp16_round_trip_is_exact_in_fp16() -> None:
    codec = get_codec("raw-fp16")
    features = np.random.default_rng(0).normal(size=(32, 16, 32)).astype(np.float32)
    encoded = codec.encode(features)
    assert len(encoded.payload) == features.size * 2
    decoded = codec.decode(encoded)
    np.testing.assert_array_equal(decoded, features.astype(np.float16).astype(np.float32))


def test_truncated_payload_is_rejected() -> None:
    codec = get_codec("raw-fp16")
    encoded = codec.encode(np.ones((4, 2, 2), dtype=np.float32))
    with pytest.raises(CodecError, match="bytes"):
        codec.decode(dataclasses.replace(encoded, payload=encoded.payload[:-3]))


def test_non_finite_payload_is_rejected() -> None:
    codec = get_codec("raw-fp32")
    encoded = codec.encode(np.array([[[np.nan]]], dtype=np.float32))
    with pytest.raises(CodecError, match="non-finite"):
        codec.decode(encoded)


def test_absurd_shape_and_unknown_codec_are_rejected() -> None:
    codec = get_codec("raw-fp16")
    encoded = codec.encode(np.ones((1, 1, 1), dtype=np.float32))
    with pytest.raises(CodecError, match="implausibly large"):
        codec.decode(dataclasses.replace(encoded, shape=(100000, 100000, 100)))
    with pytest.raises(CodecError, match="unknown codec"):
        get_codec("magic")
