# Two commands on a fresh machine: `make run` serves Herald, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run worker test audit lint format bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: venv, dependencies, migrations, demo login, server on http://$(HOST):$(PORT) (one request log line each); Ctrl+C stops it
# `exec`: the server is make's child itself, so its clean exit on Ctrl+C (status 0) is what
# make sees, and make reports no error.
run: $(VENV)/.runtime
	HERALD_ENV=development $(BIN)/flask --app wsgi db upgrade
	exec env HERALD_ENV=development HOST=$(HOST) PORT=$(PORT) $(BIN)/python wsgi.py

## worker: a Celery worker for JOB_EXECUTOR=celery (set DATABASE_URL and MESSAGE_QUEUE_URL as the web processes do)
worker: $(VENV)/.runtime
	$(BIN)/celery -A app.worker worker --pool threads --concurrency $${WORKER_CONCURRENCY:-8} --loglevel INFO

## test: lint, unit and integration tests (eventlet on SQLite and on PostgreSQL + Redis, gevent), browser tests
test: $(VENV)/.dev
	bash scripts/test.sh

## audit: known vulnerabilities in the pinned requirements (pip-audit against PyPI; HERALD_AUDIT_STRICT=1: fail when it cannot ask)
audit: $(VENV)/.dev
	$(BIN)/python scripts/audit.py

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench-quick: every benchmark at small sizes, Herald against the Node reference (minutes)
bench-quick: $(VENV)/.dev
	$(BIN)/python bench/run.py all --quick

## bench: every benchmark at the sizes the speed issue names (10k idle, 5k storm; longer)
bench: $(VENV)/.dev
	$(BIN)/python bench/run.py all --full

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
