"""The edge's ways of using the downlink, side by side on the same networks and frames.

    .venv/bin/python benchmarks/bench_late_ensemble.py [--checkpoint NAME] [--data DIR]
        [--delays 0,3,5,10] [--weights 0.4,0.6,0.7,0.8] [--blurs 1,5,7]
        [--warped-weights 0,0.3] [--every 6] [--out FILE]

For each delay d it scores local-only, feature fusion (the checkpoint's features through its
learned codec, scaled by its calibrated gains, as a fusion-mode edge does), the arithmetic
average (1 - w) * softmax(local-only) + w * remote class probabilities for d, and the late
average the edge uses (`splitcast.models.downlink.average`: log softmax(local-only) +
w * log of the forecast's probabilities blurred over k x k cells + v * the remote's on-time
log-probabilities moved along the edge's optical flow) per blur k and weight v, each per
weight w, exact (not quantised). This is the measurement behind the late-average mode; `splitcast
evaluate` scores the mode itself with its codec. Choose on the calib split, not val.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from tqdm import tqdm

from splitcast.data.clips import open_clips
from splitcast.data.images import fit
from splitcast.data.sampling import context_indices
from splitcast.models.checkpoint import load_system_with_meta
from splitcast.models.codec import get_codec
from splitcast.models.downlink import (
    AS_SENT,
    AnswerUse,
    average,
    remote_outputs,
    with_late_average,
    without_late_average,
)
from splitcast.models.evaluation import OfflineEvaluator, _EdgeMotion, _to_tensor
from splitcast.models.layers import class_ids, resize
from splitcast.models.registry import downlink_gain


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", type=Path, default=Path("out/data/val"))
    parser.add_argument("--delays", type=_floats, default=[0.0, 3.0, 5.0, 10.0])
    parser.add_argument("--weights", type=_floats, default=[0.4, 0.6, 0.7, 0.8])
    parser.add_argument("--blurs", type=_ints, default=[1, 5, 7], help="odd box sides")
    parser.add_argument(
        "--warped-weights", type=_floats, default=[0.0, 0.3], help="weights of the moved answer"
    )
    parser.add_argument("--every", type=int, default=6, help="score every N-th target frame")
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args()
    if not (args.data / "meta.json").is_file():
        parser.error(f"{args.data} holds no clips; run `splitcast data build --split val`")

    system, _ = load_system_with_meta(args.checkpoint)
    system.config = without_late_average(system.config)
    late = dataclasses.replace(system, config=with_late_average(system.config, [AS_SENT]))
    dataset = open_clips(args.data)
    evaluator = OfflineEvaluator(
        system, dataset, codec=get_codec(system.config.codec, system.bottleneck)
    )
    size_local = evaluator.local_size
    mixes = [("arithmetic", AnswerUse(w)) for w in args.weights] + [
        ("pooled", AnswerUse(w, k, v))
        for v in args.warped_weights
        for k in args.blurs
        for w in args.weights
    ]
    names = {
        mix: f"{mix[0]} k={mix[1].blur} w={mix[1].weight:g} v={mix[1].warped_weight:g}"
        for mix in mixes
    }
    rows = ["local_only", "fusion", *names.values()]
    matrices = {(row, d): evaluator._matrix() for row in rows for d in args.delays}
    steps = system.config.context_frames
    with torch.inference_mode():
        for clip in tqdm(dataset.clips, desc="late ensemble", unit="clip"):
            targets = evaluator.targets(clip, max(args.delays), 1, args.every)
            contexts = {
                (t, d): context_indices(t, d, steps, 1) for t in targets for d in args.delays
            }
            state = evaluator._state(clip, {i for c in contexts.values() for i in c})
            motion = _EdgeMotion(clip, size_local)
            for t in targets:
                label = torch.from_numpy(clip.label(t)).long().unsqueeze(0)
                label_size = tuple(label.shape[-2:])
                features = system.local.encode(_to_tensor(fit(clip.frame(t), size_local))[None])
                local = system.local.decode(features, None, size_local)
                local_ids = class_ids(local, label_size)
                for d in args.delays:
                    matrices["local_only", d].update(local_ids, label)
                    context = evaluator._stack(state, [contexts[t, d]])
                    downlink, predictive = system.remote.predict(
                        context, torch.tensor([d]), size_local
                    )
                    sent = evaluator._transmit(downlink, evaluator.codec)
                    fused = system.local.decode(
                        features, sent * downlink_gain(system.config, d), size_local
                    )
                    matrices["fusion", d].update(class_ids(fused, label_size), label)
                    probs = resize(predictive.softmax(1), size_local)
                    received = remote_outputs(late, context, torch.tensor([d]), size_local)[0]
                    flows = motion.flows([t], contexts[t, d][-1:])
                    for mix in mixes:
                        kind, use = mix
                        if kind == "arithmetic":
                            mixed = local.softmax(1).lerp_(probs, use.weight)
                        else:
                            mixed = average(local, received, use, flows)
                        matrices[names[mix], d].update(class_ids(mixed, label_size), label)
    table = {
        row: {f"d={d:g}": round(matrices[row, d].miou(), 2) for d in args.delays} for row in rows
    }
    for row, cells in table.items():
        print(f"{row:26s}", "  ".join(f"{k} {v:.2f}" for k, v in cells.items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": args.checkpoint, "miou": table}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
