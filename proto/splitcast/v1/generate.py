"""Generate the Python gRPC stubs for the splitcast wire contract from its .proto source.

Run `python -m splitcast.v1.generate` (or `make proto`) after editing splitcast.proto.
`tests/test_proto.py` regenerates into a temporary directory and fails if the committed stubs
differ, so stale stubs cannot land.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO_ROOT = PACKAGE_DIR.parents[1]
PROTO_FILES = sorted(PACKAGE_DIR.glob("*.proto"))
STUB_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_root: Path = PROTO_ROOT) -> list[Path]:
    """Compile every .proto of this package into `out_root`; return the stub paths written."""
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(p.name for p in PROTO_FILES)}")
    relative_dir = PACKAGE_DIR.relative_to(PROTO_ROOT)
    return [
        out_root / relative_dir / f"{p.stem}{suffix}"
        for p in PROTO_FILES
        for suffix in STUB_SUFFIXES
    ]


if __name__ == "__main__":
    for path in generate():
        print(path)
    sys.exit(0)
