# Every target bootstraps .venv (pinned dependencies from pyproject.toml) when it is missing
# or when pyproject.toml changed since the last install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint proto bench docs-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

# Regenerate the gRPC stubs from proto/splitcast/v1/*.proto (tests/test_proto.py fails when stale).
proto: $(STAMP)
	$(BIN)/python -m splitcast.v1.generate
