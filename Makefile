# Serverless TIE — the two commands a newcomer needs:
#   make run    bootstrap .venv and start the local functions host (+ MLLP listener) on 127.0.0.1
#   make test   bootstrap .venv and run every quality gate: ruff, mypy, pytest with coverage
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean venv lock

# Installs exactly requirements-dev.lock (every file hash-checked; pip, setuptools and wheel pinned there
# too), then the project itself without dependencies. The locks come from requirements*.txt: `make lock`.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

# Regenerate the hashed locks after editing requirements*.txt (needs PyPI; docs/supply-chain.md). Existing
# pins are kept unless LOCK_ARGS says otherwise (--upgrade, --upgrade-package NAME). pip-tools runs in its own
# venv, never in .venv. The runtime lock constrains the dev lock: what is tested is what is deployed.
LOCK_VENV := .local/lock-venv
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_ARGS)

lock:
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	@test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet pip==26.3 pip-tools==7.6.2; }
	$(PIP_COMPILE) --output-file=requirements.lock requirements.txt
	$(PIP_COMPILE) --constraint=requirements.lock --output-file=requirements-dev.lock requirements-dev.txt

# make run PORT=8081 MLLP_PORT=2576; unset, tie run uses TIE_HTTP_PORT / TIE_MLLP_PORT, else 7071 / 2575.
PORT ?=
MLLP_PORT ?=
# make run WORKERS=0 runs everything in one process; by default the Service Bus triggers run in 2 worker
# processes beside the one serving HTTP, MLLP and the timers (docs/adr/0011-local-host-worker-processes.md).
WORKERS ?= 2

# make run verifies unverified NHS numbers against the local PDS stand-in before FHIR write-back and polls
# the local MESH mailbox X26ABC1 (docs/pds-and-mesh.md); the environment overrides either (empty = off).
run: $(STAMP)
	TIE_PDS_VERIFY_DOWNSTREAMS="$${TIE_PDS_VERIFY_DOWNSTREAMS-fhir}" TIE_MESH_MAILBOXES="$${TIE_MESH_MAILBOXES-X26ABC1}" \
		$(VENV)/bin/tie run --workers $(WORKERS)$(if $(PORT), --port $(PORT))$(if $(MLLP_PORT), --mllp-port $(MLLP_PORT))

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared
	$(VENV)/bin/mypy functions tie function_app.py

unit: $(STAMP)
	$(VENV)/bin/pytest -q --cov --cov-report=term:skip-covered --timeout=300

test: lint typecheck unit

# Every bench/*.py except helpers other benchmarks start (bench/*_app.py, e.g. pipeline_app.py), then every
# performance goal with met / not met (bench/goals.py, figures as JSON in .local/bench). A report, not a
# gate: goals not met leave the exit status 0 (a benchmark that crashes does not).
bench: $(STAMP)
	@$(PY) bench/goals.py --run .local/bench

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov $(VENV)
