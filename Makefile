# The two commands of a newcomer: `make demo` (install + run the build end to end on digits)
# and `make test` (install + the whole test suite). Everything else is a convenience.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)
export MLOPS_HOME ?= $(CURDIR)/.mlops
export BENTOML_HOME ?= $(MLOPS_HOME)/bentoml
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: install demo test test-fast dev lint bench clean

install: $(VENV)/.installed

# torch first, pinned: the local CPU wheel. Any other torch spec pulls gigabytes of CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(PY) -m mlops_assets.demo

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

dev: install
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf .mlops
