"""Celery worker entry point: ``celery -A app.worker worker --pool threads`` (``make worker``).

It builds the Flask app as a *worker*: jobs run here with the same kinds, ``JobContext``
and pipeline as in the web processes — every durable event is committed first, then
published through the message queue (a write-only Socket.IO emitter: the web processes
deliver it to their clients). Each process holds its jobs under leases renewed by its own
heartbeat, started with its first task.
"""

from __future__ import annotations

from . import create_app
from .jobs.celery_app import RUN_JOB
from .jobs.runner import runner
from .realtime.pipeline import pipeline

flask_app = create_app({"ROLE": "worker", "SOCKETIO_ASYNC_MODE": "threading"})
celery = flask_app.extensions["herald_celery"]


@celery.task(name=RUN_JOB)
def run_job(job_id: int) -> None:
    """Claim job ``job_id`` and run it to its end here (no-op if another worker has it)."""
    runner.start_serving()
    with flask_app.app_context():
        runner.run_claimed(job_id)
    # Its events are committed; let them leave before the task is acknowledged (a worker
    # stopped right after must not keep the final status from the web processes).
    pipeline.outbox.drain()
