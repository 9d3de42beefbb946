"""Small helpers shared by tests: an in-process app, waiting, and a job context as the runner builds it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask


@contextmanager
def app_for_tests(tmp_path: Path, **config: Any) -> Iterator[Flask]:
    """An app in threading mode (background jobs run while tests sleep) on a fresh schema,
    with ``config`` on top of the test defaults; its running jobs are stopped after."""
    from flask_migrate import upgrade

    from app import create_app
    from app.jobs.runner import runner

    app = create_app(
        {
            "ENV_NAME": "testing",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.db'}",
            "SOCKETIO_ASYNC_MODE": "threading",
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "ARTIFACT_DIR": str(tmp_path / "artifacts"),
            "PROGRESS_INTERVAL": 0.05,
            **config,
        }
    )
    with app.app_context():
        upgrade(directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    yield app
    # The next test's fresh database hands out the same job ids: no job of this one may
    # still write (the process-wide journal would take its seqs for the new job's).
    assert runner.cancel_all_local(timeout=10), "a job of this test did not stop when cancelled"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def stored_job_context(owner_id: int, *, worker_id: str | None = None) -> Any:
    """A stored ``simulate`` job and its context, as the runner builds one (nothing runs
    it). With ``worker_id`` the job is running and held by that worker, its writes fenced
    on it. Call inside an app context."""
    from app.extensions import db
    from app.jobs.context import JobContext
    from app.models import Job
    from app.realtime.pipeline import Fence, pipeline

    job = Job(kind="simulate", owner_id=owner_id, params={})
    if worker_id is not None:
        job.status, job.worker_id = "running", worker_id
    db.session.add(job)
    db.session.commit()
    fence = Fence.held_by(worker_id) if worker_id is not None else Fence()
    return JobContext(
        job_id=job.id, owner_id=owner_id, kind="simulate", params={}, client_id=None, pipeline=pipeline, fence=fence
    )


def break_sqlite_database(app: Any) -> None:
    """Put a folder where the app's SQLite file was: from now on SQLite cannot open it."""
    from pathlib import Path

    from app.extensions import db

    with app.app_context():
        path = Path(db.engine.url.database)
        db.engine.dispose()
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    path.mkdir()
