# Everything a fresh machine needs is installed by `make setup`; every other target depends on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup demo test test-fast bench bench-sft lint clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes, so `make test` is quick once set up.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf demo-project .evolinstruct .pytest_cache
