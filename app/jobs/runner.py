"""Runs jobs under leases, so that any process may run them and none can rewrite history.

A submitted job is a ``pending`` row that nobody holds. A runner *claims* it (one
conditional UPDATE: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL) when it has a free slot,
which makes it the job's holder under a *lease* (``worker_id`` + ``lease_expires_at``)
that its heartbeat renews. Every durable write of the run is fenced on that lease (see
``realtime.pipeline.Fence``). Whoever finds a lease expired settles the job: a running
job fails ``interrupted`` (or ends ``cancelled`` if that was asked), a pending one is
released to be claimed again — so a job submitted is never lost to a dying process, and a
process paused past its lease can never write after the job's end: its writes are refused
and it stops the job at once.

Executors (``JOB_EXECUTOR``): ``inline`` runs jobs as background tasks of the web
processes (each claims while it has free slots); ``celery`` hands them to Celery workers
(``app.worker``), which claim and run them with this same class — except coordinators,
which stay in the web processes (they mostly wait for their children). Slots: at most
``MAX_CONCURRENT_JOBS`` jobs per process, plus ``MAX_COORDINATOR_JOBS`` coordinators
(batches, workflows) that mostly wait for children and so must not take their slots.
Cancel is a flag on the row; the holder polls it every ``JOB_CANCEL_POLL_INTERVAL``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import bindparam, delete, or_, select, update

from ..database import write_transaction
from ..extensions import db, socketio
from ..logs import job_logging
from ..models import FINAL_STATUSES, Job, JobStatus, Worker, utcnow
from ..realtime.journal import SeqConflict
from ..realtime.pipeline import ACTIVE_STATUSES, Fence, FenceRefused, JobGone, pipeline
from . import history
from .context import JobCancelled, JobContext, JobFailed, LeaseLost
from .registry import get_kind, queued_kind_names

log = logging.getLogger(__name__)

_jobs = Job.__table__
#: The jobs this worker holds with a cancel asked: one statement however many it holds,
#: through the ``worker_id`` index (an ``IN`` of every held id was rendered anew per poll).
_CANCELS_FLAGGED = select(_jobs.c.id).where(
    _jobs.c.worker_id == bindparam("worker_id"),
    _jobs.c.cancel_requested.is_(True),
    or_(*(_jobs.c.status == status for status in ACTIVE_STATUSES)),  # (not an ``IN``: rendered per call)
)
#: Jobs settled or released per sweep (the rest wait for the next beat).
SWEEP_BATCH = 200
#: How far the runner trusts its own lease: the margin covers clock skew between hosts.
LEASE_MARGIN = 1.0
#: On SQLite one process owns the database: at start-up, whoever held a job is gone.
FAR_FUTURE = timedelta(days=36500)

INTERRUPTED = {"code": "interrupted", "message": "the worker running this job stopped (its lease expired)"}


def new_worker_id() -> str:
    """A worker id unique across hosts, pid namespaces and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class JobRunner:
    """The process's job executor; bound with ``init_app``, started by ``start_serving``."""

    def __init__(self) -> None:
        self.worker_id = new_worker_id()
        self.executor = "inline"
        self.max_concurrent = 8
        self.max_coordinators = 64
        self.lease_seconds = 10.0
        self.heartbeat_interval = 2.0
        self.cancel_poll_interval = 0.5
        self.redispatch_after = 30.0
        self.retention = history.Retention()
        self.trim_interval = 60.0
        self._next_trim = 0.0
        self._app: Flask | None = None
        #: Jobs this process runs (None until their context exists).
        self._running: dict[int, JobContext | None] = {}
        #: Claimed jobs asked to cancel before their context existed.
        self._cancel_asked: set[int] = set()
        self._coordinators: set[int] = set()
        self._done: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._fill_lock = threading.Lock()
        self._serving = False
        #: ``web`` (serves clients; claims only with the inline executor) or ``worker`` (Celery).
        self._role = "web"
        self._queue_outage_logged = False
        #: Called (in an app context) after a sweep settled jobs, e.g. to settle their uploads.
        self._after_settle: list[Callable[[], object]] = []
        #: Called (in an app context) at every history trim: other retention on the same beat.
        self._also_trim: list[Callable[[], object]] = []

    def init_app(self, app: Flask) -> None:
        """Read the executor, limits and lease timing from config."""
        self._app = app
        self.executor = app.config["JOB_EXECUTOR"]
        self.max_concurrent = int(app.config["MAX_CONCURRENT_JOBS"])
        self.max_coordinators = int(app.config["MAX_COORDINATOR_JOBS"])
        self.lease_seconds = float(app.config["JOB_LEASE_SECONDS"])
        self.heartbeat_interval = float(app.config["WORKER_HEARTBEAT_INTERVAL"])
        self.cancel_poll_interval = float(app.config["JOB_CANCEL_POLL_INTERVAL"])
        self.redispatch_after = float(app.config["JOB_REDISPATCH_AFTER"])
        self.retention = history.Retention.from_config(app.config)
        self.trim_interval = float(app.config["HISTORY_TRIM_INTERVAL"])
        self._role = app.config["ROLE"]
        app.extensions["herald_runner"] = self
        if self.executor == "celery":
            from .celery_app import make_celery

            make_celery(app)

    @property
    def claims_pending(self) -> bool:
        """Whether this process claims pending jobs for its slots (web processes do)."""
        return self._role == "web"

    def claims(self, *, coordinator: bool) -> bool:
        """Which pending jobs this process claims: coordinators (batches, workflows) always
        run in the web processes — they mostly wait, and on Celery they could fill every
        worker thread while their children queue behind them — other kinds only inline."""
        return self._role == "web" and (coordinator or self.executor == "inline")

    # -- serving ------------------------------------------------------------------

    def start_serving(self) -> None:
        """Register this worker, settle what dead holders left, start the heartbeat."""
        with self._lock:
            if self._serving or self._app is None:
                return
            self._serving = True
        if self._role == "worker":
            self.worker_id = new_worker_id()  # a forked Celery child is a worker of its own
        with self._app.app_context():
            with write_transaction() as conn:
                now = utcnow()
                conn.execute(
                    Worker.__table__.insert().values(
                        id=self.worker_id, hostname=socket.gethostname(), pid=os.getpid(), started_at=now, seen_at=now
                    )
                )
            if db.engine.dialect.name == "sqlite":
                settled = self.sweep(now=utcnow() + FAR_FUTURE)
            else:
                settled = self.sweep()
            if settled:
                log.warning("settled %d job(s) left by stopped workers", settled)
            if self.claims_pending:
                self.fill_slots()
            db.session.remove()
        socketio.start_background_task(self._heartbeat_loop)

    def _heartbeat_loop(self) -> None:
        """Every tick: cancel flags and free slots; every beat: leases, sweep, dispatch."""
        assert self._app is not None
        next_beat = 0.0
        while True:
            try:
                with self._app.app_context():
                    self._pick_up_cancels()
                    if time.monotonic() >= next_beat:
                        next_beat = time.monotonic() + self.heartbeat_interval
                        self._beat()
                    if self.claims_pending:
                        self.fill_slots()
                    db.session.remove()
            except Exception:
                log.exception("worker heartbeat failed")
            socketio.sleep(self.cancel_poll_interval)

    def after_settle(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` whenever a sweep has settled jobs that dead workers held."""
        self._after_settle.append(callback)

    def also_trim(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` at every history trim (``HISTORY_TRIM_INTERVAL``), e.g. to trim
        other records on the same schedule; registering it again changes nothing."""
        if callback not in self._also_trim:
            self._also_trim.append(callback)

    def _beat(self) -> None:
        self.renew_leases()
        if self.sweep():
            for callback in self._after_settle:
                callback()
        if self.executor == "celery" and self._role == "web":
            self.redispatch_stale()
        if time.monotonic() >= self._next_trim:
            self._next_trim = time.monotonic() + self.trim_interval
            try:
                history.trim(db.engine, self.retention, now=utcnow())
            except Exception:
                log.exception("trimming the event history failed (next try in %.0f s)", self.trim_interval)
            for callback in self._also_trim:
                try:
                    callback()
                except Exception:
                    log.exception("a trim failed (next try in %.0f s)", self.trim_interval)

    def renew_leases(self) -> None:
        """Extend the lease of every job this worker holds; stop runs whose lease is gone."""
        started = time.monotonic()
        now = utcnow()
        # Only runs that started before the renewal are judged by it: a run registered
        # meanwhile (its claim committed after the UPDATE below read the rows) is not lost.
        with self._lock:
            held = [(job_id, ctx) for job_id, ctx in self._running.items() if ctx is not None]
        with write_transaction() as conn:
            conn.execute(update(Worker).where(Worker.id == self.worker_id).values(seen_at=now))
            renewed = set(
                conn.execute(
                    update(_jobs)
                    .where(_jobs.c.worker_id == self.worker_id, _jobs.c.status.in_(ACTIVE_STATUSES))
                    .values(lease_expires_at=now + timedelta(seconds=self.lease_seconds))
                    .returning(_jobs.c.id)
                ).scalars()
            )
            stale = now - timedelta(seconds=max(60.0, 6 * self.lease_seconds))
            conn.execute(delete(Worker).where(Worker.seen_at < stale))
        valid_until = started + self.lease_seconds - LEASE_MARGIN
        for job_id, ctx in held:
            if job_id in renewed:
                ctx.hold_lease_until(valid_until)
            else:
                log.warning("job %s: lease lost (settled by another worker); stopping it", job_id)
                ctx.lose_lease()

    def sweep(self, *, now: datetime | None = None) -> int:
        """Settle active jobs whose lease expired: fail running ones, release pending ones."""
        now = now or utcnow()
        rows = db.session.execute(
            select(Job.id, Job.status, Job.kind, Job.cancel_requested)
            .where(
                Job.status.in_(ACTIVE_STATUSES),
                Job.lease_expires_at < now,
                Job.worker_id.is_not(None),
                Job.worker_id != self.worker_id,
            )
            .order_by(Job.id)
            .limit(SWEEP_BATCH)
        ).all()
        db.session.rollback()
        settled = 0
        fence = Fence.lease_expired(now)
        for job_id, status, kind, cancel_requested in rows:
            if status == JobStatus.PENDING.value and _is_queued(kind) and not cancel_requested:
                with write_transaction() as conn:
                    released = conn.execute(
                        update(_jobs)
                        .where(_jobs.c.id == job_id, _jobs.c.status == "pending", _jobs.c.lease_expires_at < now)
                        .values(worker_id=None, lease_expires_at=None)
                    ).rowcount
                settled += released
                continue
            outcome = (JobStatus.CANCELLED, {}) if cancel_requested else (JobStatus.FAILED, {"error": INTERRUPTED})
            counts = _final_counts(kind, job_id)
            if counts is not None:
                outcome[1]["counts"] = counts
            try:
                self._finish(job_id, outcome[0], fence=fence, **outcome[1])
                settled += 1
            except (FenceRefused, JobGone):
                pass  # another worker settled it first, or the holder renewed in time
        return settled

    # -- claiming -----------------------------------------------------------------

    def submitted(self, job_id: int, *, coordinator: bool = False) -> None:
        """A job was stored as pending: run it here if there is room, or hand it over."""
        if self.claims(coordinator=coordinator):
            self.fill_slots()
        else:
            self.dispatch(job_id)

    def fill_slots(self) -> None:
        """Claim pending jobs, oldest first, while this process has free slots."""
        with self._fill_lock:
            for coordinator in (True, False):
                if not self.claims(coordinator=coordinator) or not self._unclaimed_exist(coordinator):
                    continue
                while self._free_slots(coordinator) > 0:
                    job_id = self.claim(coordinator=coordinator)
                    if job_id is None:
                        break
                    self._start(job_id, coordinator=coordinator)

    def _unclaimed_exist(self, coordinator: bool) -> bool:
        """A cheap read before claiming: most of the time nothing waits (no write needed)."""
        statement = (
            select(_jobs.c.id)
            .where(
                (_jobs.c.status == JobStatus.PENDING.value)
                & _jobs.c.worker_id.is_(None)
                & _jobs.c.kind.in_(queued_kind_names(coordinator=coordinator))
            )
            .limit(1)
        )
        with db.engine.connect() as conn:  # Core, no session: an ORM query per poll cost more than the read
            return conn.execute(statement).first() is not None

    def _free_slots(self, coordinator: bool) -> int:
        with self._lock:
            if coordinator:
                return self.max_coordinators - len(self._coordinators)
            return self.max_concurrent - (len(self._running) - len(self._coordinators))

    def claim(self, job_id: int | None = None, *, coordinator: bool = False) -> int | None:
        """Take the lease of one pending job (``job_id``, or the oldest unclaimed one)."""
        now = utcnow()
        lease = {"worker_id": self.worker_id, "lease_expires_at": now + timedelta(seconds=self.lease_seconds)}
        if job_id is not None:
            condition = (
                (_jobs.c.id == job_id)
                & (_jobs.c.status == "pending")
                & (_jobs.c.worker_id.is_(None) | (_jobs.c.lease_expires_at < now))
            )
        else:
            kinds = queued_kind_names(coordinator=coordinator)
            oldest = (
                select(_jobs.c.id)
                .where(_jobs.c.status == "pending", _jobs.c.worker_id.is_(None), _jobs.c.kind.in_(kinds))
                .order_by(_jobs.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            condition = (_jobs.c.id == oldest) & (_jobs.c.status == "pending") & _jobs.c.worker_id.is_(None)
        with write_transaction() as conn:
            claimed = conn.execute(update(_jobs).where(condition).values(**lease).returning(_jobs.c.id)).scalar()
        return claimed

    def _start(self, job_id: int, *, coordinator: bool) -> None:
        with self._lock:
            self._running[job_id] = None
            self._done.setdefault(job_id, threading.Event())
            if coordinator:
                self._coordinators.add(job_id)
        socketio.start_background_task(self._run, job_id)

    # -- Celery -------------------------------------------------------------------

    def dispatch(self, job_id: int) -> bool:
        """Hand a pending job to the Celery workers; False (and it stays pending) if the broker is away."""
        from .celery_app import send_run_job

        try:
            send_run_job(job_id)
        except Exception as exc:
            if not self._queue_outage_logged:
                log.error("cannot hand jobs to Celery (%s); they stay pending and are re-sent later", exc)
                self._queue_outage_logged = True
            return False
        if self._queue_outage_logged:
            log.warning("Celery broker reachable again; pending jobs are being re-sent")
            self._queue_outage_logged = False
        with write_transaction() as conn:
            conn.execute(update(_jobs).where(_jobs.c.id == job_id).values(dispatched_at=utcnow()))
        return True

    def redispatch_stale(self) -> int:
        """Re-send pending jobs nobody claimed within ``JOB_REDISPATCH_AFTER`` (lost or released)."""
        cutoff = utcnow() - timedelta(seconds=self.redispatch_after)
        job_ids = list(
            db.session.scalars(
                select(Job.id)
                .where(
                    Job.status == JobStatus.PENDING.value,
                    Job.worker_id.is_(None),
                    Job.kind.in_(queued_kind_names(coordinator=False)),
                    (Job.dispatched_at.is_(None)) | (Job.dispatched_at < cutoff),
                )
                .order_by(Job.id)
                .limit(SWEEP_BATCH)
            )
        )
        db.session.rollback()
        return sum(1 for job_id in job_ids if self.dispatch(job_id))

    def run_claimed(self, job_id: int) -> None:
        """Claim and run one job in the calling thread (a Celery task); no-op if not claimable."""
        if self.claim(job_id) is None:
            return
        with self._lock:
            self._running[job_id] = None
            self._done.setdefault(job_id, threading.Event())
        self._run(job_id)

    # -- cancelling and waiting -------------------------------------------------------

    def _pick_up_cancels(self) -> None:
        if not self._running:
            return
        with db.engine.connect() as conn:
            flagged = conn.execute(_CANCELS_FLAGGED, {"worker_id": self.worker_id}).scalars().all()
        for job_id in flagged:
            self.cancel_local(job_id)

    def cancel_local(self, job_id: int) -> bool:
        """Signal a job running in this process; False if it does not run here."""
        with self._lock:
            if job_id not in self._running:
                return False
            ctx = self._running[job_id]
            if ctx is None:  # claimed, its context not built yet: it looks here when it is
                self._cancel_asked.add(job_id)
                return True
        ctx.request_cancel()
        return True

    def cancel_all_local(self, timeout: float) -> bool:
        """Cancel every job running in this process and wait for them to end; False if
        some still run after ``timeout`` (an app torn down under running jobs: tests)."""
        with self._lock:
            job_ids = list(self._running)
        for job_id in job_ids:
            self.cancel_local(job_id)
        deadline = time.monotonic() + timeout
        while self._running:
            if time.monotonic() >= deadline:
                return False
            socketio.sleep(0.02)
        return True

    def wait(self, job_id: int, timeout: float | None = None) -> bool:
        """Block (cooperatively) until a job ends, wherever it runs; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._done.get(job_id)
            if event is not None and event.is_set():
                return True
            if event is None or job_id not in self._running:
                status = db.session.scalar(select(Job.status).where(Job.id == job_id))
                db.session.rollback()
                if status is None or JobStatus(status) in FINAL_STATUSES:
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            socketio.sleep(0.05 if job_id in self._running else 0.2)

    # -- running ------------------------------------------------------------------

    def _run(self, job_id: int) -> None:
        assert self._app is not None
        try:
            with self._app.app_context(), job_logging(job_id):  # every log line of the run says its job
                self._run_in_context(job_id)
        finally:
            with self._lock:
                self._running.pop(job_id, None)
                self._cancel_asked.discard(job_id)
                self._coordinators.discard(job_id)
                event = self._done.pop(job_id, None)
            if event is not None:
                event.set()
            if self.claims_pending:
                socketio.start_background_task(self._fill_slots_in_context)

    def _fill_slots_in_context(self) -> None:
        assert self._app is not None
        try:
            with self._app.app_context():
                self.fill_slots()
                db.session.remove()
        except Exception:
            log.exception("claiming the next job failed")

    def _run_in_context(self, job_id: int) -> None:
        job = db.session.get(Job, job_id)
        if job is None or JobStatus(job.status) in FINAL_STATUSES or job.worker_id != self.worker_id:
            db.session.remove()
            return
        kind = get_kind(job.kind)
        fence = Fence.held_by(self.worker_id)
        ctx = JobContext(
            job_id=job.id,
            owner_id=job.owner_id,
            kind=job.kind,
            params=dict(job.params or {}),
            client_id=job.client_id,
            pipeline=pipeline,
            fence=fence,
            progress_type=kind.progress_type,
        )
        cancel_early = job.cancel_requested
        db.session.remove()
        ctx.hold_lease_until(time.monotonic() + self.lease_seconds - LEASE_MARGIN)
        with self._lock:
            self._running[job_id] = ctx
            # A cancel that came after the row was read, while the context did not exist.
            if job_id in self._cancel_asked:
                self._cancel_asked.discard(job_id)
                cancel_early = True
        if cancel_early:
            ctx.request_cancel()
        status: JobStatus = JobStatus.FAILED
        fields: dict[str, Any] = {}
        try:
            pipeline.publish_status(job_id, JobStatus.RUNNING.value, fence=fence, started_at=utcnow())
            ctx.raise_if_cancelled()
            result = kind.run(ctx, ctx.params)
            ctx.raise_if_cancelled()
            status, fields = JobStatus.COMPLETED, {"result": _result_document(result)}
        except JobCancelled:
            status = JobStatus.CANCELLED
        except JobFailed as exc:
            fields = {"error": {"code": exc.code, "message": exc.message}}
        except (LeaseLost, FenceRefused, SeqConflict):
            log.warning("job %s was settled by another worker; this run stops without writing", job_id)
            pipeline.forget(job_id)
            return
        except JobGone:
            log.info("job %s was deleted while running", job_id)
        except Exception as exc:
            log.exception("job %s (%s) raised", job_id, job.kind)
            fields = {"error": {"code": "job_error", "message": f"{type(exc).__name__}: {exc}"}}
        finally:
            db.session.remove()
        try:
            self._finish(job_id, status, fence=fence, **fields)
        except (JobGone, FenceRefused, SeqConflict):
            pipeline.forget(job_id)
        except Exception:
            # Never leave a job running because its last word could not be written: end
            # it failed, saying so (a second failure is left to the lease sweep).
            log.exception("job %s: its final status could not be stored; it fails", job_id)
            error = {"code": "job_error", "message": "the job's final status could not be stored"}
            try:
                pipeline.publish_status(job_id, JobStatus.FAILED.value, fence=fence, finished_at=utcnow(), error=error)
            except Exception:
                log.exception("job %s: failing it could not be stored either", job_id)
            finally:
                pipeline.forget(job_id)

    def _finish(self, job_id: int, status: JobStatus, *, fence: Fence, **fields: Any) -> None:
        """Publish a job's final status (the last tick goes out first) under ``fence``,
        once every event the run appended is stored: a run whose event could not be
        stored ends ``failed`` saying so, never ``completed`` with a hole in its history."""
        pipeline.flush(job_id)
        try:
            pipeline.settle(job_id)
        except (FenceRefused, JobGone, SeqConflict):
            pipeline.forget(job_id)
            raise
        except Exception as exc:
            log.error("job %s: an event could not be stored (%s); the job fails", job_id, exc)
            status = JobStatus.FAILED
            fields = {"error": {"code": "job_error", "message": f"an event could not be stored: {exc}"}}
        pipeline.journal.forget(job_id)  # the final status goes on its own (a failed write broke the job)
        try:
            pipeline.publish_status(job_id, status.value, fence=fence, finished_at=utcnow(), **fields)
        finally:
            pipeline.forget(job_id)


def _final_counts(kind: str, job_id: int) -> dict[str, Any] | None:
    """A cut-off job's counts as its kind recomputes them (None: keep the row's)."""
    try:
        hook = get_kind(kind).final_counts
        return hook(job_id) if hook is not None else None
    except Exception:
        log.exception("job %s: recomputing its counts failed; the row keeps its last ones", job_id)
        return None
    finally:
        db.session.rollback()


def _is_queued(kind: str) -> bool:
    try:
        return get_kind(kind).queued
    except Exception:
        return False


def _result_document(value: Any) -> Any:
    """A job's result as it is stored (JSON); a result that is not JSON fails the job,
    saying why, instead of leaving it running on a final status that cannot be written."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise JobFailed(f"the job's result is not JSON: {exc}", code="result_not_json") from None
    return value


#: The process's runner.
runner = JobRunner()
