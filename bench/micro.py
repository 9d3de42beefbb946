"""In-process microbenchmarks of the job-side hot paths, in eventlet mode like the server.

    python bench/micro.py progress CALLS DB_PATH   # coalesced JobContext.progress calls/s
    python bench/micro.py publish CALLS DB_PATH    # durable events/s (commit + emit, no watchers)

Run by ``bench/run.py progress``; each builds the app as the server does (eventlet,
monkey-patched), stores a job row and runs the call in a tight loop inside a green
thread, while the progress flusher runs as it would in production. Prints one JSON line.
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
    from app.realtime.pipeline import Fence, pipeline

    mode, calls, db_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
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
                job_id=job_id,
                owner_id=owner_id,
                kind="simulate",
                params={},
                client_id=None,
                pipeline=pipeline,
                fence=Fence(),
            )
            if mode == "progress":
                progress = ctx.progress
                for i in range(1000):  # warm up
                    progress(i, calls)
                started = time.perf_counter()
                for i in range(calls):
                    progress(i + 1, calls)
                elapsed = time.perf_counter() - started
            else:
                for i in range(50):  # warm up (statement caches, connection pool)
                    ctx.log(f"warm-up {i}")
                started = time.perf_counter()
                for i in range(calls):
                    ctx.log(f"line {i}")
                elapsed = time.perf_counter() - started
            result.update(calls=calls, seconds=elapsed, calls_per_s=calls / elapsed, ns_per_call=elapsed / calls * 1e9)

    eventlet.spawn(job).wait()  # a green thread, as the runner gives each job
    result["emits"] = ticks  # progress ticks (progress mode) or durable events (publish mode)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
