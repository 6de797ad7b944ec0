# Serverless TIE — the two commands a newcomer needs:
#   make run    bootstrap .venv and start the local functions host (+ MLLP listener) on 127.0.0.1
#   make test   bootstrap .venv and run every quality gate: ruff, mypy, pytest with coverage
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean venv

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

# make run PORT=8081 MLLP_PORT=2576; unset, tie run uses TIE_HTTP_PORT / TIE_MLLP_PORT, else 7071 / 2575.
PORT ?=
MLLP_PORT ?=

run: $(STAMP)
	$(VENV)/bin/tie run$(if $(PORT), --port $(PORT))$(if $(MLLP_PORT), --mllp-port $(MLLP_PORT))

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared
	$(VENV)/bin/mypy functions tie function_app.py

unit: $(STAMP)
	$(VENV)/bin/pytest -q --cov --cov-report=term:skip-covered --timeout=300

test: lint typecheck unit

# Every bench/*.py except helpers other benchmarks start (bench/*_app.py, e.g. pipeline_app.py).
bench: $(STAMP)
	@for b in bench/*.py; do case $$b in *_app.py) continue;; esac; echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov $(VENV)
