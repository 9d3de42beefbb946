"""Microbenchmark: coalesced ``JobContext.progress`` calls per second in one job (eventlet).

    python bench/progress_micro.py CALLS DB_PATH     # prints one JSON line

Run by ``bench/run.py progress``; it builds the app as the server does (eventlet mode,
monkey-patched), stores a job row and calls ``progress`` in a tight loop inside a green
thread, while the flusher sends its ticks as it would in production.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.jobs.context import JobContext
    from app.models import Job, User
    from app.realtime.pipeline import pipeline

    calls, db_path = int(sys.argv[1]), sys.argv[2]
    app = create_app(
        {"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}", "SOCKETIO_ASYNC_MODE": "eventlet"}
    )
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        user = User(username="bench", password_hash="x")
        db.session.add(user)
        db.session.commit()
        job = Job(kind="simulate", owner_id=user.id, params={})
        db.session.add(job)
        db.session.commit()
        job_id, owner_id = job.id, user.id
        db.session.remove()

    ticks = 0
    original = pipeline._emit

    def counting(message: dict[str, Any], owner: int, rooms: Any) -> None:
        nonlocal ticks
        ticks += 1
        original(message, owner, rooms)

    pipeline._emit = counting  # type: ignore[method-assign]
    result: dict[str, Any] = {}

    def job() -> None:
        with app.app_context():
            ctx = JobContext(
                job_id=job_id, owner_id=owner_id, kind="simulate", params={}, client_id=None, pipeline=pipeline
            )
            progress = ctx.progress
            for i in range(1000):  # warm up
                progress(i, calls)
            started = time.perf_counter()
            for i in range(calls):
                progress(i + 1, calls)
            elapsed = time.perf_counter() - started
            result.update(calls=calls, seconds=elapsed, calls_per_s=calls / elapsed, ns_per_call=elapsed / calls * 1e9)

    eventlet.spawn(job).wait()  # a green thread, as the runner gives each job
    result["ticks"] = ticks
    print(json.dumps(result))


if __name__ == "__main__":
    main()
