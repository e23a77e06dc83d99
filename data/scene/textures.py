"""Procedural textures for the scene generator, drawn afresh for every clip from its seed.

Most textures are near-white patterns (noise, tiles, bricks, windows) that the renderer tints
with a per-object colour, so the same class appears in many colours and different classes can
share colours: colour alone never gives the class away.
"""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 128


def smooth_noise(
    rng: np.random.Generator, size: int = SIZE, cells: int = 8, octaves: int = 3
) -> np.ndarray:
    """Fractal value noise in [0, 1], tileable enough for ground and foliage."""
    total = np.zeros((size, size), dtype=np.float32)
    weight = 0.0
    for octave in range(octaves):
        n = cells * 2**octave
        grid = rng.random((n, n)).astype(np.float32)
        grid = np.pad(grid, ((0, 1), (0, 1)), mode="wrap")
        layer = cv2.resize(
            grid, (size + size // n, size + size // n), interpolation=cv2.INTER_CUBIC
        )
        total += layer[:size, :size] / 2**octave
        weight += 1 / 2**octave
    return np.clip(total / weight, 0.0, 1.0)


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(values * 255.0, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def asphalt(rng: np.random.Generator) -> np.ndarray:
    noise = smooth_noise(rng, cells=16)
    speckle = rng.random((SIZE, SIZE)) < 0.04
    values = 0.78 + 0.12 * (noise - 0.5) + 0.12 * speckle * rng.uniform(-1, 1, (SIZE, SIZE))
    return _grey(values)


def pavers(rng: np.random.Generator) -> np.ndarray:
    tiles = int(rng.choice([4, 8]))
    step = SIZE // tiles
    shade = rng.uniform(0.75, 0.95, (tiles, tiles))
    values = np.kron(shade, np.ones((step, step))) + 0.05 * (smooth_noise(rng, cells=16) - 0.5)
    values[::step, :] *= 0.6
    values[:, ::step] *= 0.6
    return _grey(values)


def grass(rng: np.random.Generator) -> np.ndarray:
    blades = rng.random((SIZE, SIZE)).astype(np.float32)
    blades = cv2.GaussianBlur(blades, (1, 5), 0)
    return _grey(0.65 + 0.25 * (smooth_noise(rng, cells=4) - 0.5) + 0.2 * (blades - 0.5))


def foliage(rng: np.random.Generator) -> np.ndarray:
    leaves = smooth_noise(rng, cells=16, octaves=2)
    values = 0.55 + 0.5 * (leaves - 0.5)
    values[leaves < 0.3] *= 0.5
    return _grey(values)


def bricks(rng: np.random.Generator) -> np.ndarray:
    rows, cols = 8, 4
    height, width = SIZE // rows, SIZE // cols
    values = np.ones((SIZE, SIZE), dtype=np.float32)
    for r in range(rows):
        shift = (width // 2) * (r % 2)
        for c in range(-1, cols + 1):
            x0 = c * width + shift
            values[r * height : (r + 1) * height, max(0, x0) : max(0, min(SIZE, x0 + width))] = (
                rng.uniform(0.7, 0.95)
            )
            if 0 <= x0 < SIZE:
                values[r * height : (r + 1) * height, x0] = 0.55
        values[r * height, :] = 0.55
    return _grey(values + 0.05 * (smooth_noise(rng, cells=16) - 0.5))


def facade(rng: np.random.Generator) -> np.ndarray:
    """Wall with a 2 x 2 grid of windows (one texture tile = two floors, two bays)."""
    wall = 0.85 + 0.1 * (smooth_noise(rng, cells=8) - 0.5)
    image = _grey(wall).astype(np.float32)
    glass = np.array(
        rng.choice([[40, 55, 70], [70, 80, 90], [25, 30, 35], [90, 110, 130]]), dtype=np.float32
    )
    width = rng.uniform(0.35, 0.7)
    height = rng.uniform(0.4, 0.65)
    bay = SIZE // 2
    for row in range(2):
        for col in range(2):
            x0 = int(col * bay + bay * (1 - width) / 2)
            y0 = int(row * bay + bay * (1 - height) / 2)
            x1, y1 = int(x0 + bay * width), int(y0 + bay * height)
            pane = glass * rng.uniform(0.7, 1.4)
            if rng.random() < 0.3:
                pane = np.array([200, 180, 120], dtype=np.float32) * rng.uniform(0.7, 1.1)
            image[y0:y1, x0:x1] = pane
            image[y0:y1, (x0 + x1) // 2] *= 0.6
    return np.clip(image, 0, 255).astype(np.uint8)


def car_atlas(rng: np.random.Generator) -> np.ndarray:
    """Quadrants: body (tinted), glass, tyres, lights. See `CAR_*` rectangles."""
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    half = SIZE // 2
    body = 0.9 + 0.05 * (smooth_noise(rng, size=half, cells=4) - 0.5)
    image[half:, :half] = _grey(body)
    image[half:, half:] = np.array([35, 40, 48], dtype=np.uint8) + rng.integers(
        0, 25, (half, half, 1), dtype=np.uint8
    )
    image[:half, :half] = 22
    image[:half, half:] = (235, 225, 200)
    image[: half // 2, half:] = (200, 30, 30)
    return image


CAR_BODY = (0.0, 0.0, 0.5, 0.5)
CAR_GLASS = (0.5, 0.0, 1.0, 0.5)
CAR_TYRE = (0.0, 0.5, 0.5, 1.0)
CAR_LIGHTS = (0.5, 0.5, 1.0, 1.0)


def sign_plate(rng: np.random.Generator) -> np.ndarray:
    """One of several common sign designs (round, triangular, square, direction)."""
    image = np.full((SIZE, SIZE, 3), 235, dtype=np.uint8)
    c = SIZE // 2
    kind = int(rng.integers(5))
    red, blue, yellow, green = (200, 20, 25), (20, 60, 170), (240, 200, 20), (20, 120, 60)
    if kind == 0:
        cv2.circle(image, (c, c), c - 4, red, 14)
        cv2.putText(
            image,
            str(int(rng.choice([30, 50, 70]))),
            (c - 30, c + 15),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.4,
            (20, 20, 20),
            4,
        )
    elif kind == 1:
        image[:] = blue
        cv2.arrowedLine(image, (c, SIZE - 20), (c, 20), (240, 240, 240), 12, tipLength=0.4)
    elif kind == 2:
        triangle = np.array([[c, 6], [SIZE - 6, SIZE - 12], [6, SIZE - 12]])
        cv2.fillPoly(image, [triangle], red)
        cv2.fillPoly(image, [((triangle - c) * 0.7 + c).astype(int)], (245, 245, 245))
        cv2.line(image, (c, 45), (c, 85), (20, 20, 20), 8)
    elif kind == 3:
        image[:] = yellow
        cv2.rectangle(image, (8, 8), (SIZE - 8, SIZE - 8), (20, 20, 20), 6)
    else:
        image[:] = green
        cv2.putText(
            image,
            "A" + str(int(rng.integers(1, 99))),
            (12, c + 18),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.8,
            (240, 240, 240),
            4,
        )
    return image


def traffic_light(rng: np.random.Generator) -> np.ndarray:
    """Dark housing with three lamps, one of them lit."""
    image = np.full((SIZE, SIZE, 3), 30, dtype=np.uint8)
    lit = int(rng.integers(3))
    colours = [(230, 30, 30), (240, 180, 20), (40, 220, 90)]
    for i, colour in enumerate(colours):
        centre = (SIZE // 2, int(SIZE * (0.2 + 0.3 * i)))
        cv2.circle(
            image, centre, SIZE // 8, colour if i == lit else tuple(v // 5 for v in colour), -1
        )
    return image
