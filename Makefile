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

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
