#!/bin/sh
# Does the edge install without PyTorch and run from an export folder? Builds a fresh virtual
# environment, installs this checkout without extras (the versions in constraints.txt), fails
# if torch came with it, prints what was installed and its size, then runs `splitcast edge` on
# the built-in scene from EXPORT (made by `splitcast export` with the full install) and prints
# the summary's runtime and latency. Needs the network (PyPI); not part of `make test`.
#   usage: scripts/edge_install_check.sh EXPORT [PYTHON] [FOLDER]
set -eu
EXPORT=$(cd "${1:?usage: scripts/edge_install_check.sh EXPORT [PYTHON] [FOLDER]}" && pwd)
PYTHON=${2:-python3}
FOLDER=${3:-/tmp/splitcast-edge-install}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$FOLDER"
mkdir -p "$FOLDER"
"$PYTHON" -m venv "$FOLDER/venv"
PIP="$FOLDER/venv/bin/python -m pip"
$PIP install --quiet -c "$ROOT/constraints.txt" "$ROOT"
if $PIP show torch >/dev/null 2>&1; then
    echo "torch was installed with the edge"
    exit 1
fi
echo "edge install: $($PIP list --format=freeze | wc -l) packages, $(du -sh "$FOLDER/venv" | cut -f1), no torch"
$PIP list --format=freeze | tr '\n' ' '
echo
cd "$FOLDER"  # outside the checkout: only the installed package is importable
"$FOLDER/venv/bin/splitcast" edge --model "$EXPORT" --frames 90 --fast \
    --summary "$FOLDER/summary.json" --log "$FOLDER/edge.jsonl" >/dev/null
"$FOLDER/venv/bin/python" - "$FOLDER/summary.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
assert summary["frames"] == 90, summary
print(f"splitcast edge from {sys.argv[1]}: {summary['frames']} frames, local runtime "
      f"{summary['local_runtime']}, step p50 {summary['latency_p50_ms']:.1f} ms")
PY
