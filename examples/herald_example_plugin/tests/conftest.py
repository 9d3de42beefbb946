"""The example plugin's tests reuse Herald's own fixtures: the in-process app, the real
server (``python wsgi.py``), PostgreSQL, Redis and Celery as ``tests/`` starts them."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "src"
REPO = Path(__file__).resolve().parents[3]
for path in (str(REPO), str(PLUGIN_SRC)):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ.setdefault("HERALD_ENV", "testing")

#: What a server needs to find and load the plugin (it is not installed in the venv).
PLUGIN_ENV = {
    "HERALD_JOB_MODULES": "herald_example_plugin.jobs",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN_SRC), os.environ.get("PYTHONPATH")])),
}

from tests.conftest import auth, client  # noqa: E402,F401  (Herald's fixtures, used as they are)
from tests.helpers import app_for_tests  # noqa: E402
from tests.integration.conftest import (  # noqa: E402,F401
    _collect_garbage_after_each_test,
    _engines,
    postgres_database,
    postgres_server,
    postgres_template,
    pytest_runtest_makereport,
    redis_server,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """Herald in threading mode on a fresh schema, with the plugin named in its config."""
    with app_for_tests(tmp_path, HERALD_JOB_MODULES=["herald_example_plugin.jobs"]) as app:
        yield app
