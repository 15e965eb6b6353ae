# alp — `make demo` runs the main job, `make test` the test suite.
# Both create or update .venv from requirements.lock first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The local CPU torch wheel, where the machine has one (uv does not read pip's config).
FIND_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --python $(BIN)/python $(FIND_LINKS) --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps --compile-bytecode -e .
	@touch $(STAMP)

demo: venv
	$(BIN)/python -m flows.demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check al_core flows tasks tests benchmarks

# Unit and flow tests (Prefect test harness, embedded stores) in TEST_WORKERS processes (one test
# file each at a time), then the integration tests in a process of their own: they start the local
# stack of real servers (infra/local) themselves.
TEST_WORKERS ?= 2
test: venv lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests/unit tests/flows
	$(BIN)/python -m pytest -q tests/integration

bench: venv
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) demo-workspace .pytest_cache .ruff_cache .hypothesis
