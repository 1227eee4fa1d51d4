# Everything a fresh machine needs is installed by `make setup`; every other target depends on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup demo test test-fast bench bench-sft bench-gpu lint clean

setup: $(STAMP)

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

demo: setup
	$(BIN)/evol demo

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m 'not slow'

bench: setup
	$(BIN)/python bench/run.py $(BENCH)

bench-sft: setup
	$(BIN)/python bench/run.py sft

# On one H100-class GPU, under 8 minutes: SFT at TinyLlama-1.1B shape in bf16, generation, a ZeRO-3
# smoke run; writes bench/results/*_gpu.json. `make bench-gpu DRY_RUN=1` runs the same plan at toy
# size on a CPU (what tests/test_bench_gpu.py checks).
bench-gpu: setup
	$(BIN)/python bench/gpu.py $(if $(DRY_RUN),--dry-run)

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf demo-project .evolinstruct .pytest_cache
