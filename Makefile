# The README's set-up: `make test` (install into .venv and run the tests), `make lint`.
# A second run reinstalls nothing: the install is redone only when its inputs change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install test test-fast lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(PY) requirements.txt setup.py pyproject.toml
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

test: $(INSTALLED)
	$(PY) -m pytest

test-fast: $(INSTALLED)
	$(PY) -m pytest -m "not slow"

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(INSTALLED)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
