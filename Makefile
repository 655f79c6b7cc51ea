# The README's two Quickstart commands: `make run` and `make test`.
# Everything installs into .venv inside the checkout; nothing global changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Where `make run` serves: `make run PORT=8001`, `make run HOST=0.0.0.0`.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/python manage.py quickstart --addrport $(HOST):$(PORT)

# Test workers in parallel (pytest-xdist), each with a test database of its own
# (test_crm_gw0, ...). The whole suite on two cores (2026-12-06, a machine shared
# with other test runs, load 2-5): one process 878 s, 2 workers 645 s, 3 workers
# 626 s and 758 s, with more CPU (user+sys 654-665 s against 606-648 s for 2, 576
# s for one): 2. `make test TEST_WORKERS=0` runs in one process; PYTEST_ARGS adds
# options (.ci/run selects its second pass with -m).
TEST_WORKERS ?= 2

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
