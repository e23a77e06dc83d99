"""Downlink codecs on this CPU: encode and decode time per frame, bytes, and (for the learned
codec) the entropy model's estimate next to the real bitstream's size.

    .venv/bin/python benchmarks/bench_codec.py [--checkpoint NAME] [--data DIR] [--frames N]

Feature maps are the checkpoint's real feature-fusion answers (delay 3) on the frames of a clip
directory (default out/data/val when present) or of the built-in moving scene. Torch runs on one
thread, as a server or edge core would.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from splitcast.cloud.runtime import RemoteRuntime
from splitcast.data.clips import open_clips
from splitcast.edge.sources import MOVING_SCENE, open_source
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import codec_set
from splitcast.models.registry import SplitSystem


def _frames(data: Path | None, count: int) -> Iterator[np.ndarray]:
    if data is not None and (data / "meta.json").is_file():
        produced = 0
        for clip in open_clips(data).clips:
            for index in range(clip.num_frames):
                if produced == count:
                    return
                produced += 1
                yield clip.frame(index)
    else:
        yield from open_source(MOVING_SCENE, max_frames=count).frames()


def downlink_features(system: SplitSystem, frames: Iterator[np.ndarray]) -> list[np.ndarray]:
    runtime = RemoteRuntime(system)
    context = runtime.new_stream()
    return [
        runtime.answer(context, sequence, rgb, 3.0)[0]["features"][0].numpy()
        for sequence, rgb in enumerate(frames)
    ]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(values, 50)) * 1000, 3),
        "p95": round(float(np.percentile(values, 95)) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", type=Path, default=Path("out/data/val"))
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    system = load_system(args.checkpoint).with_combiner("feature_fusion")
    features = downlink_features(system, _frames(args.data, args.frames))
    raw_fp32 = features[0].size * 4
    report = {"checkpoint": args.checkpoint, "frames": len(features), "raw_fp32_bytes": raw_fp32}
    for name, codec in codec_set(system.bottleneck).items():
        encode_s, decode_s, sizes = [], [], []
        for item in tqdm(features, desc=name, unit="frame"):
            start = time.perf_counter()
            encoded = codec.encode(item)
            middle = time.perf_counter()
            codec.decode(encoded)
            decode_s.append(time.perf_counter() - middle)
            encode_s.append(middle - start)
            sizes.append(len(encoded.payload))
        total = [e + d for e, d in zip(encode_s, decode_s, strict=True)]
        row = {
            "bytes_mean": round(float(np.mean(sizes)), 1),
            "percent_of_raw_fp32": round(100 * float(np.mean(sizes)) / raw_fp32, 2),
            "encode_ms": _ms(encode_s),
            "decode_ms": _ms(decode_s),
            "encode_plus_decode_ms": _ms(total),
        }
        if name == "learned":
            bottleneck = system.bottleneck
            with torch.inference_mode():
                estimated = [
                    float(bottleneck.table_bits(bottleneck.symbols(torch.from_numpy(f)[None]))) / 8
                    for f in features
                ]
            row["estimated_bytes_mean"] = round(float(np.mean(estimated)), 1)
            row["actual_over_estimated"] = round(float(np.mean(sizes) / np.mean(estimated)), 4)
        report[name] = row
        print(
            f"{name:10s} {row['bytes_mean']:9.1f} B/frame ({row['percent_of_raw_fp32']:6.2f} % of "
            f"raw fp32)  encode p50 {row['encode_ms']['p50']:.2f} ms  decode p50 "
            f"{row['decode_ms']['p50']:.2f} ms  encode+decode p50 "
            f"{row['encode_plus_decode_ms']['p50']:.2f} / p95 "
            f"{row['encode_plus_decode_ms']['p95']:.2f} ms"
            + (
                f"  estimated {row['estimated_bytes_mean']:.1f} B (actual/estimated "
                f"{row['actual_over_estimated']:.3f})"
                if name == "learned"
                else ""
            )
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
