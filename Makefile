# The two entry points of the README. Each creates .venv on first use and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint format benchmark

# pip -qq prints errors only; PYTHONWARNINGS silences setuptools' notes about editable installs (warnings, never errors).
$(VENV)/.installed: pyproject.toml
	@echo "installing seqjax[test] into $(VENV) (once)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -qq --upgrade pip
	@PYTHONWARNINGS=ignore $(PY) -m pip install -qq -e '.[test]'
	@touch $@

demo: $(VENV)/.installed
	@$(PY) experiments/gradient_flow.py --workdir=runs/gradient_flow

test: lint $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

benchmark: $(VENV)/.installed
	$(PY) benchmarks/benchmark.py --workdir=runs/benchmark
