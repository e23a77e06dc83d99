"""Run a video file through server -> delay link -> edge with the Python API.

    python examples/video_file_pipeline.py --video my_drive.mp4 --rtt-ms 100 --out out/example

Copy this when dropping splitcast into your own pipeline: `run_edge` takes any object with
`fps`, `name`, `num_frames` and a `frames()` iterator of RGB uint8 arrays.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from pathlib import Path

import torch

from splitcast.edge.loop import EdgeOptions, run_edge
from splitcast.edge.sources import VideoFileSource
from splitcast.launch import start_link, start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, required=True, help="input video file")
    parser.add_argument("--rtt-ms", type=float, default=100.0, help="link round trip (ms)")
    parser.add_argument("--frames", type=int, help="stop after this many frames")
    parser.add_argument(
        "--model", default="default", help="packaged checkpoint, folder or configuration name"
    )
    parser.add_argument("--out", type=Path, default=Path("out/example"), help="output folder")
    args = parser.parse_args()

    source = VideoFileSource(args.video, max_frames=args.frames)
    torch.set_num_threads(1)  # the server runs on this machine too; leave it the other cores
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        server = stack.enter_context(start_server(args.model))
        target = server.address
        if args.rtt_ms > 0:
            target = stack.enter_context(start_link(target, args.rtt_ms / 2)).address
        summary = run_edge(
            source,
            EdgeOptions(
                model=args.model,
                server=target,
                wait_for_server_s=30.0,
                video_path=args.out / "overlay.mp4",
                log_path=args.out / "frames.jsonl",
                banner=f"{source.name} | RTT {args.rtt_ms:g} ms",
            ),
        )
    (args.out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    print(json.dumps(summary.to_dict(), indent=2))


if __name__ == "__main__":
    main()
