#!/usr/bin/env bash
# The whole test run behind `make test`: lint, in-process tests, then the real-server
# integration tests under eventlet (deployed mode) on SQLite and on PostgreSQL + Redis,
# under gevent (SQLite), then the browser tests, then the dependency audit. Each stage
# prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
START=$SECONDS
stage_start=$SECONDS
stage() {
  if [ -n "${STAGE:-}" ]; then echo "-- $STAGE: $((SECONDS - stage_start)) s"; fi
  STAGE="$1"
  stage_start=$SECONDS
  echo "== $1"
}

apt_install() {
  # Debian packages for a stage, installed when missing (as root; like chromium below).
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing $*: install them as root (apt-get install $*)" >&2
    return 1
  fi
}

stage "ruff"
$BIN/ruff check .
$BIN/ruff format --check .

stage "unit and in-process tests (threading mode)"
$BIN/pytest -q -p no:cacheprovider tests --ignore=tests/integration --ignore=tests/e2e

# Real PostgreSQL 15 and Redis, started by the tests themselves (tests/engines.py); no
# system service is used. The engine proofs (test_engines.py) start their own servers.
if [ ! -x /usr/lib/postgresql/15/bin/postgres ] || ! command -v redis-server >/dev/null || [ ! -x /usr/sbin/nginx ]; then
  apt_install postgresql-15 redis-server nginx
fi

stage "integration tests, eventlet, SQLite"
# test_engines.py starts its own PostgreSQL: it runs in the two passes below, not here;
# the scale-out tests (several processes, their own Redis each) run in the next pass only.
SOCKETIO_ASYNC_MODE=eventlet $BIN/pytest -q -p no:cacheprovider tests/integration \
  --ignore=tests/integration/test_engines.py -m "not scale_out"

stage "integration tests, eventlet, PostgreSQL + Redis"
# The whole suite again with every server on PostgreSQL + Redis, plus the engine,
# scale-out (several processes, Celery workers) and deployment-kit proofs.
HERALD_TEST_ENGINES=postgres-redis SOCKETIO_ASYNC_MODE=eventlet $BIN/pytest -q -p no:cacheprovider tests/integration

stage "example plugin (examples/herald_example_plugin): in-process, eventlet inline, Celery worker"
HERALD_TEST_ENGINES=postgres-redis SOCKETIO_ASYNC_MODE=eventlet $BIN/pytest -q -p no:cacheprovider examples/herald_example_plugin/tests

stage "integration tests, gevent, SQLite (engine proofs on PostgreSQL)"
SOCKETIO_ASYNC_MODE=gevent $BIN/pytest -q -p no:cacheprovider tests/integration -m "not eventlet_only and not scale_out"

stage "browser tests (Playwright + Debian chromium, eventlet server)"
if [ ! -x /usr/bin/chromium ]; then
  # Playwright's own browser download is not used (nor reachable): Debian's chromium is.
  apt_install chromium || echo "no /usr/bin/chromium: the browser tests will skip" >&2
fi
SOCKETIO_ASYNC_MODE=eventlet $BIN/pytest -q -p no:cacheprovider tests/e2e

stage "dependency audit (pip-audit, PyPI advisories, pinned runtime requirements)"
# Last, so that a machine without the advisory service still runs every test first. Fails
# on a known vulnerability; says loudly when the service answered for nothing (see
# scripts/audit.py; HERALD_AUDIT_STRICT=1 makes that a failure too).
$BIN/python scripts/audit.py
echo "-- $STAGE: $((SECONDS - stage_start)) s"
echo "== all stages passed in $((SECONDS - START)) s"
