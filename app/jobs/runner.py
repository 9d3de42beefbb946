"""Runs jobs in background tasks with bounded concurrency, and keeps them honest.

Each process is a *worker* with an id and a heartbeat row. It runs at most
``MAX_CONCURRENT_JOBS`` jobs at once; the rest wait as ``pending`` in its queue.
Coordinator kinds (batches, workflows) mostly wait for child jobs, so they have their own
limit (``MAX_COORDINATOR_JOBS``) and never take a slot their children need: a full house
of batches cannot starve its own cases. Every
job ends in a final state (``try/finally``). When a process starts serving it sweeps jobs
left ``pending``/``running`` by dead workers to ``failed`` with code ``interrupted``; the
heartbeat loop repeats that sweep and carries cancel requests made on other processes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import deque
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select, update

from ..database import write_transaction
from ..extensions import db, socketio
from ..models import FINAL_STATUSES, Job, JobStatus, Worker, utcnow
from ..realtime.pipeline import JobGone, pipeline
from .context import JobCancelled, JobContext, JobFailed
from .registry import get_kind

log = logging.getLogger(__name__)

ACTIVE_STATUSES = (JobStatus.PENDING.value, JobStatus.RUNNING.value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    """The process's job executor; bound with ``init_app``, started by ``start_serving``."""

    def __init__(self) -> None:
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.max_concurrent = 8
        self.max_coordinators = 64
        self.heartbeat_interval = 5.0
        self.stale_after = 30.0
        self._app: Flask | None = None
        self._queue: deque[int] = deque()
        self._coordinator_queue: deque[int] = deque()
        #: Running jobs of coordinator kinds (also in ``_running``).
        self._coordinators: set[int] = set()
        self._running: dict[int, JobContext | None] = {}
        self._done: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._serving = False

    def init_app(self, app: Flask) -> None:
        """Read limits from config."""
        self._app = app
        self.max_concurrent = int(app.config["MAX_CONCURRENT_JOBS"])
        self.max_coordinators = int(app.config.get("MAX_COORDINATOR_JOBS", 64))
        self.heartbeat_interval = float(app.config.get("WORKER_HEARTBEAT_INTERVAL", 5.0))
        self.stale_after = float(app.config.get("WORKER_STALE_AFTER", 30.0))
        app.extensions["herald_runner"] = self

    # -- serving ------------------------------------------------------------------

    def start_serving(self) -> None:
        """Register this worker, sweep interrupted jobs, start the heartbeat loop."""
        if self._serving or self._app is None:
            return
        self._serving = True
        with self._app.app_context():
            with write_transaction() as conn:
                now = utcnow()
                conn.execute(
                    Worker.__table__.insert().values(
                        id=self.worker_id,
                        hostname=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=now,
                        seen_at=now,
                    )
                )
            swept = self.sweep_interrupted()
            if swept:
                log.warning("marked %d interrupted job(s) as failed", swept)
        socketio.start_background_task(self._heartbeat_loop)

    def dead_worker_ids(self) -> set[str] | None:
        """Workers whose process is gone; None means "every worker but me" (SQLite)."""
        assert self._app is not None
        if db.engine.dialect.name == "sqlite":
            return None  # one process owns an SQLite database
        cutoff = utcnow() - timedelta(seconds=self.stale_after)
        host = socket.gethostname()
        dead: set[str] = set()
        for worker in db.session.scalars(select(Worker)):
            if worker.id == self.worker_id:
                continue
            if worker.seen_at < cutoff or (worker.hostname == host and not _pid_alive(worker.pid)):
                dead.add(worker.id)
        db.session.rollback()
        return dead

    def sweep_interrupted(self) -> int:
        """Fail every active job whose worker is dead; returns how many."""
        dead = self.dead_worker_ids()
        query = select(Job.id).where(Job.status.in_(ACTIVE_STATUSES))
        if dead is None:
            query = query.where((Job.worker_id != self.worker_id) | Job.worker_id.is_(None))
        else:
            if not dead:
                return 0
            query = query.where(Job.worker_id.in_(dead))
        job_ids = list(db.session.scalars(query))
        db.session.rollback()
        for job_id in job_ids:
            self._finish(
                job_id,
                JobStatus.FAILED,
                error={"code": "interrupted", "message": "the server stopped while this job was active"},
                only_if_active=True,
            )
        return len(job_ids)

    def _heartbeat_loop(self) -> None:
        assert self._app is not None
        while True:
            socketio.sleep(self.heartbeat_interval)
            try:
                with self._app.app_context():
                    with write_transaction() as conn:
                        conn.execute(update(Worker).where(Worker.id == self.worker_id).values(seen_at=utcnow()))
                    self._pick_up_remote_cancels()
                    if db.engine.dialect.name != "sqlite":
                        self.sweep_interrupted()
                    db.session.remove()
            except Exception:
                log.exception("worker heartbeat failed")

    def _pick_up_remote_cancels(self) -> None:
        running = [job_id for job_id, ctx in list(self._running.items()) if ctx is not None]
        if not running:
            return
        flagged = db.session.scalars(select(Job.id).where(Job.id.in_(running), Job.cancel_requested.is_(True))).all()
        for job_id in flagged:
            ctx = self._running.get(job_id)
            if ctx is not None:
                ctx.request_cancel()

    # -- queueing -----------------------------------------------------------------

    def enqueue(self, job_id: int, *, coordinator: bool = False) -> None:
        """Run the job now if there is room, else keep it pending in the queue."""
        with self._lock:
            self._done.setdefault(job_id, threading.Event())
            (self._coordinator_queue if coordinator else self._queue).append(job_id)
        self._start_next()

    def _start_next(self) -> None:
        with self._lock:
            while self._coordinator_queue and len(self._coordinators) < self.max_coordinators:
                job_id = self._coordinator_queue.popleft()
                self._coordinators.add(job_id)
                self._start(job_id)
            while self._queue and len(self._running) - len(self._coordinators) < self.max_concurrent:
                self._start(self._queue.popleft())

    def _start(self, job_id: int) -> None:
        # Called with the lock held.
        self._running[job_id] = None
        socketio.start_background_task(self._run, job_id)

    def cancel_local(self, job_id: int) -> str | None:
        """Cancel a job of this process: ``"dequeued"``, ``"signalled"`` or None."""
        with self._lock:
            queue = next((q for q in (self._queue, self._coordinator_queue) if job_id in q), None)
            if queue is not None:
                queue.remove(job_id)
                event = self._done.pop(job_id, None)
                if event is not None:
                    event.set()
                return "dequeued"
            if job_id in self._running:
                ctx = self._running[job_id]
                if ctx is not None:
                    ctx.request_cancel()
                    return "signalled"
                return "starting"
        return None

    def wait(self, job_id: int, timeout: float | None = None) -> bool:
        """Block (cooperatively) until a job of this process ends; False on timeout."""
        event = self._done.get(job_id)
        if event is None:
            return True
        waited = 0.0
        while not event.is_set():
            if timeout is not None and waited >= timeout:
                return False
            socketio.sleep(0.05)
            waited += 0.05
        return True

    def running_ids(self) -> list[int]:
        """Jobs running in this process now."""
        return [job_id for job_id, ctx in self._running.items() if ctx is not None]

    # -- running ------------------------------------------------------------------

    def _run(self, job_id: int) -> None:
        assert self._app is not None
        try:
            with self._app.app_context():
                self._run_in_context(job_id)
        finally:
            with self._lock:
                self._running.pop(job_id, None)
                self._coordinators.discard(job_id)
                event = self._done.pop(job_id, None)
            if event is not None:
                event.set()
            self._start_next()

    def _run_in_context(self, job_id: int) -> None:
        job = db.session.get(Job, job_id)
        if job is None or JobStatus(job.status) in FINAL_STATUSES:
            db.session.remove()
            return
        kind = get_kind(job.kind)
        ctx = JobContext(
            job_id=job.id,
            owner_id=job.owner_id,
            kind=job.kind,
            params=dict(job.params or {}),
            client_id=job.client_id,
            pipeline=pipeline,
            progress_type=kind.progress_type,
        )
        cancel_early = job.cancel_requested
        db.session.remove()
        self._running[job_id] = ctx
        if cancel_early:
            ctx.request_cancel()
        status: JobStatus = JobStatus.FAILED
        fields: dict[str, Any] = {}
        try:
            pipeline.publish_status(job_id, JobStatus.RUNNING.value, started_at=utcnow())
            ctx.raise_if_cancelled()
            result = kind.run(ctx, ctx.params)
            ctx.raise_if_cancelled()
            status, fields = JobStatus.COMPLETED, {"result": _jsonable(result)}
        except JobCancelled:
            status = JobStatus.CANCELLED
        except JobFailed as exc:
            fields = {"error": {"code": exc.code, "message": exc.message}}
        except JobGone:
            log.info("job %s was deleted while running", job_id)
        except Exception as exc:
            log.exception("job %s (%s) raised", job_id, job.kind)
            fields = {"error": {"code": "job_error", "message": f"{type(exc).__name__}: {exc}"}}
        finally:
            db.session.remove()
            try:
                self._finish(job_id, status, **fields)
            except JobGone:
                pipeline.forget(job_id)

    def _finish(self, job_id: int, status: JobStatus, *, only_if_active: bool = False, **fields: Any) -> None:
        """Publish a job's final status (the last tick goes out first)."""
        if only_if_active:
            job = db.session.get(Job, job_id)
            active = job is not None and job.status in ACTIVE_STATUSES
            db.session.rollback()
            if not active:
                return
        pipeline.flush(job_id)
        try:
            pipeline.publish_status(job_id, status.value, finished_at=utcnow(), **fields)
        finally:
            pipeline.forget(job_id)


def _jsonable(value: Any) -> Any:
    """Job results are stored as JSON; anything else is refused loudly in the log."""
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


#: The process's runner.
runner = JobRunner()
