# The two commands of the README: `make audit` (the main job) and `make test`.
# Both create .venv on first use: torch==2.13.0 first (the CPU wheel; without the pin pip
# pulls a newer torch with several GB of CUDA wheels), then the project with its test and
# tracr extras (so the Tracr compile tests run; the library itself needs tracr only to compile).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export WANDB_MODE := disabled

.PHONY: audit test test-slow bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,tracr]'
	touch $(STAMP)

audit: $(STAMP)
	$(BIN)/groundtruth audit

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-enable --benchmark-only -m "slow or not slow" -s

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks
