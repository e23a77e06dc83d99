"""`splitcast export`'s command line (the work is in `splitcast.export`, imported when run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_export_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="a checkpoint as fixed-shape ONNX graphs with a manifest",
        description="Write a checkpoint's edge and server graphs as fixed-shape ONNX files "
        "with manifest.json (files, sha256, input and output shapes, normalisation, uplink "
        "encoding, combiner, answer tensors and codecs, per-age policy, fps, K, opset, "
        "version). Each graph passes onnx's checker and matches PyTorch within 1e-3.",
    )
    parser.add_argument(
        "--checkpoint",
        default="default",
        help="packaged checkpoint, folder or configuration name (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the graphs")
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from splitcast.export import export_checkpoint_graphs

    manifest = export_checkpoint_graphs(args.checkpoint, args.out)
    for name, graph in manifest["graphs"].items():
        shapes = ", ".join(f"{v['name']} {v['shape']}" for v in graph["inputs"])
        print(f"{name:24} {shapes}  (max diff {graph['max_abs_difference_from_pytorch']:.1e})")
    print(f"wrote {len(manifest['graphs'])} graphs and {args.out / 'manifest.json'}")
    print(f"run the edge from it (no PyTorch needed): splitcast edge --model {args.out}")
    print(json.dumps({"combiner": manifest["combiner"], "opset": manifest["opset"]}))
