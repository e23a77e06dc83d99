"""Uplink image decoding rejects bad input with a reason instead of decoding garbage."""

from __future__ import annotations

import numpy as np
import pytest

from splitcast.data.images import ImageDecodeError, decode_image, encode_image

RGB = (np.arange(64 * 96 * 3) % 251).astype(np.uint8).reshape(64, 96, 3)


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_round_trip(fmt: str) -> None:
    decoded = decode_image(encode_image(RGB, fmt, 95), fmt, 96, 64)
    assert decoded.shape == (64, 96, 3)
    if fmt == "png":
        np.testing.assert_array_equal(decoded, RGB)


@pytest.mark.parametrize(
    ("data", "fmt", "width", "height", "reason"),
    [
        (b"definitely not an image", "jpeg", 96, 64, "undecodable_image"),
        (encode_image(RGB, "jpeg")[:200], "jpeg", 96, 64, "undecodable_image"),
        (encode_image(RGB, "png"), "jpeg", 96, 64, "format_mismatch"),
        (encode_image(RGB, "jpeg"), "jpeg", 95, 64, "bad_dimensions"),
        (encode_image(RGB, "jpeg"), "jpeg", 100000, 64, "bad_dimensions"),
        (encode_image(RGB, "jpeg"), "gif", 96, 64, "unsupported_format"),
    ],
)
def test_bad_images_are_rejected(
    data: bytes, fmt: str, width: int, height: int, reason: str
) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, fmt, width, height)
    assert caught.value.reason == reason
