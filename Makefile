# Every target bootstraps .venv (the exact versions in constraints.txt, within pyproject.toml's
# ranges) when it is missing or when either file changed since the last install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint proto bench docs-check default-checkpoint install-check \
	edge-install-check gpu-check gpu-wheels

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[full,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/splitcast demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

# README.md stays a front page (at most 200 lines) and every relative link in it and docs/ resolves.
docs-check: $(STAMP)
	$(BIN)/python -m pytest tests/test_docs.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmarks print figures measured side by side in one run (not timed unit tests).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sampler.py
	$(BIN)/python benchmarks/bench_relay.py
	$(BIN)/python benchmarks/bench_runtimes.py

# Install this checkout into a fresh Python 3.12 environment that already holds torch 2.11 (as a
# GPU image does) and check that torch is kept (needs the network and about 6 GB; not in CI).
INSTALL_CHECK_PYTHON ?= python3.12
install-check:
	scripts/install_check.sh $(INSTALL_CHECK_PYTHON)

# Install the edge alone (no extras) into a fresh environment, check that torch is not in it, and
# run `splitcast edge` from the default checkpoint's export folder (needs the network; not in CI).
EXPORT := out/export-default
edge-install-check: $(STAMP)
	test -f $(EXPORT)/manifest.json || $(BIN)/splitcast export --checkpoint default --out $(EXPORT)
	scripts/edge_install_check.sh $(EXPORT) $(PYTHON)

# On a CUDA machine with its own Python 3.12 and torch (no registry needed): the tests marked
# gpu and the device benchmark, figures in out/gpu-check/gpu-check.json. It installs the
# wheels in .whl, which `make gpu-wheels` downloads here first (about 17 MB).
gpu-check:
	scripts/gpu_check.sh

GPU_WHEELS := grpcio==1.85.1 grpcio-tools==1.85.1 grpcio-health-checking==1.85.1 \
	grpcio-reflection==1.85.1 protobuf==7.36.2 constriction==0.5.0 zstandard==0.25.0
gpu-wheels: $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)

# Regenerate the gRPC stubs from proto/splitcast/v1/*.proto (tests/test_proto.py fails when stale).
proto: $(STAMP)
	$(BIN)/python -m splitcast.v1.generate

# Rebuild the shipped default checkpoint from scratch on this machine (about 4.5 hours on 2 CPU
# cores; docs/training.md says what each step does): the benchmark's splits, then `splitcast fit`
# on them (every stage of the recipe trained and calibrated to 10 ticks, both calibrations, the
# report on val), then the calibration lengthened to the 30-tick (1 s) answer horizon; the last
# step overwrites models/checkpoints/default.
DATA := out/data
RECIPE := out/recipe
default-checkpoint: $(STAMP)
	$(BIN)/splitcast data build --split train --out $(DATA)/train
	$(BIN)/splitcast data build --split val --out $(DATA)/val
	$(BIN)/splitcast data build --split calib --out $(DATA)/calib
	$(BIN)/splitcast fit --data $(DATA)/train --calib-data $(DATA)/calib --test-data $(DATA)/val \
		--delays 0-10 --every 3 --confidence 0 --weights 0.4,0.5,0.6 --blurs 5,7,9,11 \
		--moved-weights 0,0.2,0.4,0.6 --out $(RECIPE)
	$(BIN)/splitcast calibrate --checkpoint $(RECIPE)/checkpoint --data $(DATA)/calib \
		--out $(RECIPE)/horizon --max-delay 30 --from-age 11 --weights 0.1,0.15,0.2 \
		--blurs 15,21,31 --moved-weights 0 --every 5 --confidence 0
	$(BIN)/splitcast package $(RECIPE)/horizon/checkpoint --out models/checkpoints/default
