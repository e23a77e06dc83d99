#!/bin/sh
# The GPU check, for a CUDA machine that has its own Python 3.12 and torch but no package
# registry: installs the wheels in .whl that such an image lacks (`make gpu-wheels` fetches
# them here) and this package, both without dependencies, into a folder of their own; runs
# the tests marked gpu, then the device benchmark. Writes gpu-tests.log and gpu-check.json
# into $OUT (default out/gpu-check).
set -eu
OUT=${OUT:-out/gpu-check}
SITE=${SITE:-/tmp/splitcast-site}
mkdir -p "$OUT"
python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA device here"'
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" .
export PYTHONPATH="$SITE"
python3 -P -m pytest -m gpu -p no:cacheprovider -q -rs tests/test_devices.py 2>&1 | tee "$OUT/gpu-tests.log"
python3 benchmarks/bench_devices.py --out "$OUT/gpu-check.json"
