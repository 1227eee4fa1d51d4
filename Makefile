# Everything a fresh machine needs is installed by `make setup`; every other target depends on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: help setup demo test test-fast bench bench-sft bench-gpu lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install (quick when already done)

# Re-runs only when pyproject.toml changes, so `make test` is quick once set up.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# DeepSpeed builds from source: without build isolation, against the pinned torch already here (an
	# isolated build would fetch an unpinned torch, gigabytes). Its ops compile on first use.
	$(BIN)/python -m pip install --quiet 'torch==2.13.0' setuptools wheel
	$(BIN)/python -m pip install --quiet --no-build-isolation 'deepspeed>=0.15'
	$(BIN)/python -m pip install --quiet -e '.[dev,deepspeed]'
	touch $@

demo: setup ## the offline demo pipeline in demo-project/
	$(BIN)/evol demo

test: setup ## the whole test suite (includes the slow DVC end-to-end tests)
	$(BIN)/pytest

test-fast: setup ## everything but the slow tests
	$(BIN)/pytest -m 'not slow'

bench: setup ## benchmarks (BENCH="evolve ..." for some), written to bench/results/
	$(BIN)/python bench/run.py $(BENCH)

bench-sft: setup ## the SFT stage against a plain PyTorch loop (bench/results/sft.json)
	$(BIN)/python bench/run.py sft

# `make bench-gpu DRY_RUN=1` runs the same plan at toy size on a CPU (what tests/test_bench_gpu.py checks).
bench-gpu: setup ## on one H100-class GPU, <8 min: SFT at TinyLlama shape, generation, ZeRO-3 (bench/results/*_gpu.json)
	$(BIN)/python bench/gpu.py $(if $(DRY_RUN),--dry-run)

lint: setup ## ruff
	$(BIN)/ruff check .

clean: ## remove demo-project/, .evolinstruct/ and the pytest cache
	rm -rf demo-project .evolinstruct .pytest_cache
