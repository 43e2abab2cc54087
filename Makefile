# Common tasks. `make help` lists them. Everything runs inside .venv (created on first use).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    ?= demo_out

.PHONY: help setup demo test test-quick lint format bench clean

help:  ## list the common tasks
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with test tools

demo: $(STAMP)  ## the whole job offline: synth clips -> store -> train -> eval -> serve -> predict
	$(BIN)/python scripts/demo.py --out $(DEMO)

test: $(STAMP)  ## lint and type-check, then the full test suite (slow tests included), as CI runs it
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -ra --durations=25

test-quick: $(STAMP)  ## the tests without the slow ones
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)  ## ruff lint and format check, mypy over the five packages
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: $(STAMP)  ## all benchmarks at full size (QUICK=--quick: about a minute each)
	for b in benchmarks/store_io.py benchmarks/extract.py benchmarks/train_loader.py benchmarks/serve_load.py benchmarks/import_landmarks.py benchmarks/real_signs.py benchmarks/spot.py benchmarks/teach.py; do \
		[ -f $$b ] && $(BIN)/python $$b $(QUICK) || true; done

clean:  ## remove the demo output and caches (keeps .venv)
	rm -rf $(DEMO) .pytest_cache .ruff_cache .mypy_cache .hypothesis
