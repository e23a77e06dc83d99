#!/bin/sh
# Does `pip install splitcast` keep the torch a machine already has? Builds a virtual
# environment (Python 3.12 by default; 3.10 and 3.11 work too) holding torch 2.11.0 and
# torchvision 0.26.0 (what our GPU image ships), installs this checkout into it with pip's
# normal resolver, and fails unless both are still the same versions afterwards; then runs the
# model, codec and ONNX Runtime tests against that install.
# Needs the network (PyPI) and about 6 GB of disk; not part of `make test`.
#   usage: scripts/install_check.sh [PYTHON] [FOLDER]
set -eu
PYTHON=${1:-python3.12}
FOLDER=${2:-/tmp/splitcast-install-check}
TORCH=2.11.0
TORCHVISION=0.26.0
mkdir -p "$FOLDER/wheels"
"$PYTHON" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12), sys.version'
rm -rf "$FOLDER/venv"
"$PYTHON" -m venv "$FOLDER/venv"
PIP="$FOLDER/venv/bin/python -m pip"
$PIP download --quiet --no-deps --only-binary :all: -d "$FOLDER/wheels" \
    "torch==$TORCH" "torchvision==$TORCHVISION"
$PIP install --quiet --no-deps "$FOLDER"/wheels/torch-$TORCH-*.whl \
    "$FOLDER"/wheels/torchvision-$TORCHVISION-*.whl
versions() { $PIP show torch torchvision 2>/dev/null | grep '^Version' | tr '\n' ' '; }
before=$(versions)
$PIP install --quiet --report "$FOLDER/report.json" "$(dirname "$0")/..[full,dev]"
after=$(versions)
echo "torch and torchvision before: $before; after: $after"
"$FOLDER/venv/bin/python" - "$FOLDER/report.json" <<'PY'
import json, sys
installed = [item["metadata"]["name"] for item in json.load(open(sys.argv[1]))["install"]]
replaced = [name for name in installed if name.lower() in ("torch", "torchvision")]
assert not replaced, f"pip replaced {replaced}"
print(f"pip installed {len(installed)} packages beside the existing torch, none of them torch")
PY
[ "$before" = "$after" ] || { echo "torch changed"; exit 1; }
# from outside the checkout, so that nothing imports its source folders instead of the install
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$FOLDER"
"$FOLDER/venv/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/tests/test_models.py" \
    "$ROOT/tests/test_codec.py" "$ROOT/tests/test_onnx_runtimes.py"
