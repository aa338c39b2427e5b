# The README's set-up: `make demo` (the main job) and `make test`; `make lint` runs ruff.
# A second run reinstalls nothing: the install is redone only when its inputs change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

DEMO_CONFIG ?= configs/yolox_nano_shapes.yaml

.PHONY: install demo test test-fast lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(PY) requirements.txt setup.py pyproject.toml
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -e ".[dev]"
	# HOTA (TrackEval) without the GUI OpenCV it asks for: see setup.py.
	$(PY) -m pip install --no-deps "trackeval==1.3.0" "tabulate>=0.9"
	touch $(INSTALLED)

install: $(INSTALLED)

# The main job: generate the synthetic shapes set (once), train YOLOX-Nano on it, evaluate.
demo: $(INSTALLED)
	$(PY) tools/make_synthetic.py --out data/synthetic --size 192 --train 800 --val 100 --min-size 12 --max-objects 12
	$(PY) tools/train.py $(DEMO_CONFIG) --device cpu

# Two workers (pytest-xdist), one per core, each test file in one of them (tests/conftest.py).
test: $(INSTALLED)
	$(PY) -m pytest -n 2 --dist loadfile

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
