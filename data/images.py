"""Compressing frames for the uplink and decoding them safely on the server.

Encoding uses opencv (fast). Decoding uses Pillow, which reads the header before allocating
pixels and refuses truncated data rather than filling it with grey: an image whose real size
differs from the declared one, or which is absurdly large, is rejected with a reason.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

FORMATS = ("jpeg", "webp", "png")
MAX_SIDE = 8192

_CV2_EXTENSION = {"jpeg": ".jpg", "webp": ".webp", "png": ".png"}
_PIL_FORMAT = {"JPEG": "jpeg", "WEBP": "webp", "PNG": "png"}


class ImageDecodeError(ValueError):
    """An uplink image the server cannot use; `reason` is short and machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`rgb` resized to `size` (height, width) with area averaging; unchanged if it fits."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def encode_image(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Compress an RGB uint8 image [H, W, 3]. `quality` applies to JPEG and WebP (1-100)."""
    if fmt not in FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}; choose one of {', '.join(FORMATS)}")
    params: list[int] = []
    if fmt == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif fmt == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, buffer = cv2.imencode(_CV2_EXTENSION[fmt], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"opencv could not encode a {rgb.shape} image as {fmt}")
    return buffer.tobytes()


def decode_image(data: bytes, fmt: str, width: int, height: int) -> np.ndarray:
    """Decode an uplink image to RGB uint8, checking format and declared size first."""
    if fmt not in FORMATS:
        raise ImageDecodeError("unsupported_format", f"image format {fmt!r} is not supported")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ImageDecodeError(
            "bad_dimensions",
            f"declared size {width}x{height} is outside 1..{MAX_SIDE} pixels per side",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            actual_format = _PIL_FORMAT.get(image.format or "")
            actual_size = image.size
    except Exception as exc:  # PIL raises many types for garbage; all mean "not an image"
        raise ImageDecodeError(
            "undecodable_image", f"image bytes are not a readable {fmt}: {exc}"
        ) from None
    if actual_format != fmt:
        raise ImageDecodeError(
            "format_mismatch", f"declared {fmt} but the bytes are {image.format or 'unknown'}"
        )
    if actual_size != (width, height):
        raise ImageDecodeError(
            "bad_dimensions",
            f"declared {width}x{height} but the image is {actual_size[0]}x{actual_size[1]}",
        )
    try:
        return np.array(image.convert("RGB"))
    except Exception as exc:  # truncated or corrupt entropy-coded data
        raise ImageDecodeError(
            "undecodable_image", f"{fmt} data is truncated or corrupt: {exc}"
        ) from None
