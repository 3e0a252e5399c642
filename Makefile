# The README's two commands are `make up` and `make test`; everything they need
# is installed by the targets below, on a fresh machine, without a Docker engine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: up down status test lint typecheck unit deps browser bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Tidings needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

deps: $(VENV)/.installed
	$(BIN)/tidings deps

# Only the tests need a browser: Debian's chromium and playwright-core from npm.
browser: $(VENV)/.installed
	$(BIN)/python -m infra.browser

up: deps
	$(BIN)/tidings up --demo

down:
	$(BIN)/tidings down

status:
	$(BIN)/tidings status

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest -m unit

test: deps browser lint typecheck
	$(BIN)/pytest

bench: deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
