"""Per-frame foreground masks for a fixed-camera video, by background subtraction.

    python examples/foreground_masks.py --video vtest.avi --out vtest-masks
    splitcast data import --video vtest.avi --masks vtest-masks --out out/vtest \
        --clip-len 40 --classes background,foreground

A quick way to get labels for footage where what moves is what matters (people or cars in
front of a still camera): the background is the per-pixel median of frames sampled over the
whole video, a pixel is foreground where any colour channel differs from it by more than
`--threshold`, and small specks are removed. A band of `--ignore-band` pixels around every
mask edge is written as 255 (ignore), so the scores do not hinge on where a shadow ends.
These are machine-made labels, not hand annotation: they miss people who stand still and
count moving shadows as foreground. Class ids: 0 background, 1 foreground.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

IGNORE = 255


def read_frames(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise SystemExit(f"cannot open video {video}")
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise SystemExit(f"{video} has no frames opencv can decode")
    return frames


def foreground_mask(
    frame: np.ndarray, background: np.ndarray, threshold: int, min_area: int, band: int
) -> np.ndarray:
    """Class ids for one BGR frame: 0 background, 1 foreground, 255 near an edge."""
    difference = cv2.absdiff(cv2.GaussianBlur(frame, (5, 5), 0), background).max(axis=2)
    moving = (difference > threshold).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, kernel)
    moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, kernel, iterations=2)
    count, components, stats, _ = cv2.connectedComponentsWithStats(moving)
    keep = np.zeros(count, dtype=np.uint8)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    mask = keep[components]
    if band:
        edge = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
        uncertain = cv2.dilate(mask, edge) != cv2.erode(mask, edge)
        mask[uncertain] = IGNORE
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for 000000.png, ...")
    parser.add_argument("--threshold", type=int, default=30, help="(default: %(default)s)")
    parser.add_argument("--min-area", type=int, default=150, help="pixels (default: %(default)s)")
    parser.add_argument("--ignore-band", type=int, default=2, help="pixels (default: %(default)s)")
    args = parser.parse_args()
    frames = read_frames(args.video)
    sample = frames[:: max(1, len(frames) // 100)]
    background = np.median(np.stack([cv2.GaussianBlur(f, (5, 5), 0) for f in sample]), axis=0)
    background = background.astype(np.uint8)
    args.out.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(tqdm(frames, desc="masks", unit="frame")):
        mask = foreground_mask(frame, background, args.threshold, args.min_area, args.ignore_band)
        cv2.imwrite(str(args.out / f"{index:06d}.png"), mask)
    print(f"wrote {len(frames)} masks to {args.out}")


if __name__ == "__main__":
    main()
