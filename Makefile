# dinobench developer entry points. Both targets create/reuse ./.venv and install everything.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dinobench-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv sysdeps demo test test-fast bench-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing dinobench and its dependencies into $(VENV) (torch is ~5 GB: a few minutes the first time)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

sysdeps:
	@bash scripts/system-deps.sh

demo: venv
	$(BIN)/dinobench demo --output demo-output

test: venv sysdeps
	$(BIN)/python -m pytest

bench-check: venv
	bash scripts/ci-benchmark.sh

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) build dist *.egg-info demo-output outputs ci-results
