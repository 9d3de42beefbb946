#!/usr/bin/env bash
# The whole test run behind `make test`: lint, in-process tests, then the real-server
# integration tests under eventlet (deployed mode) and gevent, then the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== ruff"
$BIN/ruff check .
$BIN/ruff format --check .

echo "== unit and in-process tests (threading mode)"
$BIN/pytest -q -p no:cacheprovider tests --ignore=tests/integration --ignore=tests/e2e

echo "== integration tests, eventlet"
SOCKETIO_ASYNC_MODE=eventlet $BIN/pytest -q -p no:cacheprovider tests/integration

echo "== integration tests, gevent"
SOCKETIO_ASYNC_MODE=gevent $BIN/pytest -q -p no:cacheprovider tests/integration -m "not eventlet_only"

echo "== browser tests (Playwright + Debian chromium, eventlet server)"
if [ ! -x /usr/bin/chromium ]; then
  # Playwright's own browser download is not used (nor reachable): Debian's chromium is.
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "no /usr/bin/chromium and not root: install Debian's chromium; the browser tests will skip" >&2
  fi
fi
SOCKETIO_ASYNC_MODE=eventlet $BIN/pytest -q -p no:cacheprovider tests/e2e
