"""The Cityscapes 19-class trainId label space used by default, with its colour palette."""

from __future__ import annotations

import colorsys

import numpy as np

IGNORE_INDEX = 255

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip


def palette_for(count: int) -> tuple[tuple[int, int, int], ...]:
    """Colours for `count` user-named classes: dark grey for the first (usually the background),
    then the Cityscapes colours, then evenly spread hues."""
    colours = [(64, 64, 64), *CITYSCAPES_PALETTE[11:], *CITYSCAPES_PALETTE[:11]]
    while len(colours) < count:
        rgb = colorsys.hsv_to_rgb(len(colours) * 0.261 % 1.0, 0.85, 0.9)
        colours.append(tuple(round(255 * v) for v in rgb))
    return tuple(colours[:count])


def colorize(
    class_ids: np.ndarray, palette: tuple[tuple[int, int, int], ...] = CITYSCAPES_PALETTE
) -> np.ndarray:
    """RGB image [H, W, 3] uint8 for a map of class ids; ignored or unknown ids are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[class_ids.astype(np.uint8)]
