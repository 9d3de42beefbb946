"""Celery for ``JOB_EXECUTOR=celery``: web processes send ``herald.run_job``, workers run it.

The broker message only says "job N is waiting"; the job row stays the truth. A worker
claims the job under a lease before running it (a duplicate or late message finds it
claimed and does nothing), and a message lost with a broker outage is re-sent by the web
processes' heartbeat (``JOB_REDISPATCH_AFTER``). Late acks: a worker that dies mid-task
leaves the message unacknowledged for the broker to hand out again.
"""

from __future__ import annotations

from celery import Celery
from flask import Flask, current_app

#: The task every job runs as.
RUN_JOB = "herald.run_job"


def make_celery(app: Flask) -> Celery:
    """A Celery app on ``CELERY_BROKER_URL`` with Herald's delivery settings."""
    celery = Celery("herald", broker=app.config["CELERY_BROKER_URL"], set_as_current=False)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue="herald",
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
    )
    app.extensions["herald_celery"] = celery
    return celery


def send_run_job(job_id: int) -> None:
    """Queue ``herald.run_job(job_id)``; raises when the broker cannot take it (quickly)."""
    celery: Celery = current_app.extensions["herald_celery"]
    celery.send_task(
        RUN_JOB,
        args=[job_id],
        retry=True,
        retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
    )
