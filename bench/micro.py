"""In-process microbenchmarks of the job-side hot paths, in eventlet mode like the server.

    python bench/micro.py progress CALLS DB_PATH   # coalesced JobContext.progress calls/s
    python bench/micro.py publish CALLS DB_PATH    # durable events/s (commit + emit, no watchers)
    python bench/micro.py publish_many CALLS DB_PATH   # 50 jobs logging at once: events/s, loop p99

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
#: The worker id the bench's jobs are held by.
WORKER = "bench-worker"
#: Jobs logging at once in ``publish_many`` (the issue's "50 jobs logging at once").
JOBS_AT_ONCE = 50
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
        # Held by this process, as the runner holds a running job: writes are fenced on it.
        jobs = [
            Job(kind="simulate", owner_id=user.id, params={}, status="running", worker_id=WORKER)
            for _ in range(JOBS_AT_ONCE)
        ]
        db.session.add_all(jobs)
        db.session.commit()
        job_ids, owner_id = [job.id for job in jobs], user.id
        job_id = job_ids[0]
        db.session.remove()

    ticks = 0
    original = pipeline.outbox.send

    def counting(message: dict[str, Any], owner: int, rooms: Any) -> None:
        nonlocal ticks
        ticks += 1
        original(message, owner, rooms)

    pipeline.outbox.send = counting  # type: ignore[method-assign]
    result: dict[str, Any] = {}

    def context(job_id: int) -> JobContext:
        return JobContext(
            job_id=job_id,
            owner_id=owner_id,
            kind="simulate",
            params={},
            client_id=None,
            pipeline=pipeline,
            fence=Fence.held_by(WORKER),
        )

    if mode == "publish_many":
        publish_many(app, pipeline, [context(job_id) for job_id in job_ids], calls, result)
        pipeline.outbox.drain(60)
        result["emits"] = ticks
        print(json.dumps(result))
        return

    def job() -> None:
        with app.app_context():
            ctx = context(job_id)
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
                pipeline.settle(job_id)  # committed, not just handed in
                pipeline.outbox.drain(60)  # and sent
                elapsed = time.perf_counter() - started
            result.update(calls=calls, seconds=elapsed, calls_per_s=calls / elapsed, ns_per_call=elapsed / calls * 1e9)

    eventlet.spawn(job).wait()  # a green thread, as the runner gives each job
    pipeline.outbox.drain(60)
    result["emits"] = ticks  # progress ticks (progress mode) or durable events (publish mode)
    print(json.dumps(result))


def publish_many(app: Any, pipeline: Any, contexts: list[Any], calls: int, result: dict[str, Any]) -> None:
    """Every context logs ``calls / len(contexts)`` lines at once, each in its own green
    thread; a pinger measures how late the loop answers meanwhile (1 ms sleeps)."""
    per_job = max(1, calls // len(contexts))
    lateness: list[float] = []
    running = True

    def pinger() -> None:
        while running:
            asked = time.perf_counter()
            eventlet.sleep(0.001)
            lateness.append(time.perf_counter() - asked - 0.001)

    def log_lines(ctx: Any) -> None:
        with app.app_context():
            for i in range(per_job):
                ctx.log(f"line {i}")
            ctx._pipeline.settle(ctx.job_id)  # committed, not just handed in

    with app.app_context():
        contexts[0].log("warm-up")
    ping = eventlet.spawn(pinger)
    started = time.perf_counter()
    threads = [eventlet.spawn(log_lines, ctx) for ctx in contexts]
    for thread in threads:
        thread.wait()
    pipeline.outbox.drain(60)  # and sent
    elapsed = time.perf_counter() - started
    running = False
    ping.wait()
    lateness.sort()
    total = per_job * len(contexts)
    result.update(
        calls=total,
        jobs=len(contexts),
        seconds=elapsed,
        calls_per_s=total / elapsed,
        loop_lateness_p99_ms=lateness[int(len(lateness) * 0.99)] * 1000 if lateness else None,
        loop_lateness_max_ms=lateness[-1] * 1000 if lateness else None,
    )


if __name__ == "__main__":
    main()
