"""Feed frames from your own OpenCV loop into the edge, one `step` per frame.

    splitcast serve --port 50051 &                      # the cloud side, anywhere reachable
    python examples/opencv_loop.py --source 0            # a camera index, a video file or a URL
    python examples/opencv_loop.py --source clip.mp4 --server 127.0.0.1:50051 --show

This is the shape of a ROS callback, a GStreamer appsink or a camera SDK's frame handler: the
loop is yours, `EdgeClient.step` returns the class ids for the frame it is given and never
waits for the network (no server, a slow one or a dead one: it runs local-only and says so).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

import splitcast


def colourise(class_ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A BGR picture of the class ids, one fixed colour per class, at `size` (width, height)."""
    palette = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    return cv2.resize(palette[class_ids], size, interpolation=cv2.INTER_NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="0", help="camera index, video file or stream URL")
    parser.add_argument("--server", help="HOST:PORT of `splitcast serve` (omit: local-only)")
    parser.add_argument("--model", default="default", help="checkpoint name, folder or config")
    parser.add_argument("--frames", type=int, default=300, help="stop after this many frames")
    parser.add_argument(
        "--show", action="store_true", help="show the overlay in a window (needs a GUI OpenCV)"
    )
    args = parser.parse_args()

    capture = cv2.VideoCapture(int(args.source) if args.source.isdigit() else args.source)
    if not capture.isOpened():
        raise SystemExit(f"could not open {args.source!r} as a camera, video file or stream")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    system = splitcast.load_model(args.model)
    modes: dict[str, int] = {}
    with splitcast.EdgeClient(system, server=args.server, fps=fps) as edge:
        if args.server:
            edge.wait_connected(timeout_s=10)
        for _ in range(args.frames):
            ok, bgr = capture.read()
            if not ok:
                break
            result = edge.step(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            modes[result.mode] = modes.get(result.mode, 0) + 1
            if args.show:
                overlay = colourise(result.class_ids, (bgr.shape[1], bgr.shape[0]))
                cv2.imshow("splitcast", cv2.addWeighted(bgr, 0.5, overlay, 0.5, 0))
                if cv2.waitKey(1) == 27:  # Esc
                    break
            else:
                time.sleep(max(0.0, 1.0 / fps - result.latency_ms / 1000.0))
    print(f"frames by mode: {modes}")


if __name__ == "__main__":
    main()
