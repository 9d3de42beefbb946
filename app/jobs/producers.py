"""External producers: jobs that a program outside Herald runs and reports into.

``POST /api/jobs {"kind": "external", "name", "total?"}`` stores a ``pending`` job (seq 1,
like every job) and mints a *producer token* for it (``app.auth.tokens``): a JWT of type
``producer`` naming the job, which can only ``POST /api/jobs/<id>/report`` and reads nothing.

A report is a batch of items, each with the producer's own number ``n`` (strictly
increasing per job). Items with ``n`` at or below the job's highest applied ``n``
(``Job.producer_seq``) are skipped, so a batch sent again — a retry after a timeout —
changes nothing. The rest go through the pipeline as any job's updates do: log lines,
counts, messages, results and statuses are durable events (per-job seq, committed, then
sent); progress is the job's coalesced tick.

Exactly once, across processes, without a lock between them: each durable item's write is
fenced on the job's ``worker_id``, which holds ``producer:<n>`` — the holder token of the
last applied ``n``. The same UPDATE that takes the item's seq checks the token and moves it
to ``producer:<this n>`` together with ``producer_seq`` (:class:`_Chain`; a pending job's
implicit ``running`` moves it to ``…+running``), so the number and the event commit in one
transaction, and no token is ever left twice: a second report racing with the first is
refused by the fence instead of applying twice (the producer sends it again and its items
are skipped). Progress items after the last durable one move the token with one
conditional UPDATE of their own: a progress tick is absolute, so replaying one is harmless.

A producer that vanishes leaves its job active until its token expires
(``PRODUCER_TOKEN_TTL_SECONDS``); then :func:`expire_producers` (every web process, a few
times per TTL) fails it with ``producer_expired``. A user's cancel ends an external job at
once; the producer learns it from its next report (``409 job_finished``, ``status``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select, update

from ..auth.tokens import issue_producer_token
from ..concurrency import Slicer
from ..database import commit_session, write_transaction
from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db, socketio
from ..inputs import check_client_id
from ..models import FINAL_STATUSES, Job, JobStatus, utcnow
from ..realtime.journal import SeqConflict
from ..realtime.pipeline import ACTIVE_STATUSES, Fence, FenceRefused, JobGone, ProgressState, pipeline
from .registry import get_kind

log = logging.getLogger(__name__)

__all__ = [
    "EXTERNAL",
    "Report",
    "apply_report",
    "cancel_external",
    "check_items",
    "create_external_job",
    "expire_producers",
    "forget_idle",
    "start_expiry_sweep",
]

#: The kind, registered by ``kinds/external.py`` (not imported from there: the kinds package
#: imports the job service, which reaches this module).
EXTERNAL = "external"
#: What a producer may report, and the fields each item type takes (besides ``n``, ``type``).
ITEM_FIELDS: dict[str, frozenset[str]] = {
    "progress": frozenset({"current", "total", "message"}),
    "log": frozenset({"message", "level"}),
    "counts": frozenset({"counts"}),
    "message": frozenset({"message"}),
    "result": frozenset({"result"}),
    "status": frozenset({"status", "result", "error", "message"}),
}
LOG_LEVELS = ("info", "warning", "error")
#: Statuses a producer may set (``pending`` is Herald's: the job waits for its producer).
PRODUCER_STATUSES = ("running", "completed", "failed", "cancelled")
#: The highest ``n`` a producer may use: 2^53-1, the largest integer every JSON client keeps
#: exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``). A producer numbering its items from 1
#: never comes near it; a job whose last ``n`` is the bound can take no further item.
MAX_N = 2**53 - 1
#: Keys in one ``counts`` item, and characters in a key.
MAX_COUNT_KEYS = 64
MAX_COUNT_KEY_CHARS = 64
#: External jobs settled per sweep (the rest wait for the next one).
SWEEP_BATCH = 200
#: Attempts to end a job whose holder token a racing report keeps moving.
END_ATTEMPTS = 5
#: Seconds without a report here after which this process drops the progress it kept of a
#: job (reports may reach any process: the job may have ended on another one).
IDLE_FORGET = 30.0

EXPIRED_ERROR = {
    "code": "producer_expired",
    "message": "the producer did not end this job before its token expired (PRODUCER_TOKEN_TTL_SECONDS)",
}


def holder(n: int) -> str:
    """The ``worker_id`` of an external job whose highest applied producer item is ``n``."""
    return f"producer:{n}"


# -- creating ----------------------------------------------------------------------------


def create_external_job(owner_id: int, params: Any, *, client_id: str | None = None) -> tuple[Job, str]:
    """Store a ``pending`` external job (event seq 1) and mint its producer token."""
    clean = get_kind(EXTERNAL).validate(params)
    if client_id is not None:
        check_client_id(client_id)
    now = utcnow()
    expires_at = now + timedelta(seconds=float(current_app.config["PRODUCER_TOKEN_TTL_SECONDS"]))
    job = Job(
        kind=EXTERNAL,
        owner_id=owner_id,
        status=JobStatus.PENDING.value,
        params=clean,
        client_id=client_id,
        worker_id=holder(0),
        producer_seq=0,
        producer_expires_at=expires_at,
        created_at=now,
    )
    db.session.add(job)
    commit_session()
    pipeline.publish_status(job.id, JobStatus.PENDING.value)
    token = issue_producer_token(owner_id, job.id, expires_at)
    db.session.refresh(job)
    db.session.expunge(job)
    return job, token


# -- checking a batch --------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _item_problem(item: Any, max_chars: int) -> tuple[str, str] | None:
    """``(code, message)`` of what is wrong with one item (``n`` aside), or None."""
    if not isinstance(item, dict):
        return "invalid_item", "an item is an object {n, type, ...}"
    type_ = item.get("type")
    if type_ not in ITEM_FIELDS:
        return "unknown_type", f"type must be one of {', '.join(ITEM_FIELDS)}, got {type_!r}"
    extra = sorted(set(item) - ITEM_FIELDS[type_] - {"n", "type"})
    if extra:
        return "unknown_field", f"a {type_} item takes no {', '.join(extra)}"
    message = item.get("message")
    if message is not None and not isinstance(message, str):
        return "invalid_message", "message must be a string"
    if isinstance(message, str) and len(message) > max_chars:
        return "line_too_long", f"message is {len(message)} characters; the limit is {max_chars}"
    if type_ == "progress":
        if not _is_number(item.get("current")) or item["current"] < 0:
            return "invalid_progress", "current must be a number, 0 or more"
        total = item.get("total")
        if total is not None and (not _is_number(total) or total < 0):
            return "invalid_progress", "total must be a number, 0 or more, or null"
    elif type_ in ("log", "message"):
        if message is None:
            return "invalid_message", f"a {type_} item needs a message"
        if type_ == "log" and item.get("level", "info") not in LOG_LEVELS:
            return "invalid_level", f"level must be one of {', '.join(LOG_LEVELS)}"
    elif type_ == "counts":
        counts = item.get("counts")
        if not isinstance(counts, dict) or not counts or len(counts) > MAX_COUNT_KEYS:
            return "invalid_counts", f"counts must be an object of 1 to {MAX_COUNT_KEYS} numbers"
        for key, value in counts.items():
            if len(key) > MAX_COUNT_KEY_CHARS:
                return "invalid_counts", (
                    f"a counts key has at most {MAX_COUNT_KEY_CHARS} characters; "
                    f"{key[:MAX_COUNT_KEY_CHARS]!r}… has {len(key)}"
                )
            if not _is_number(value):
                return "invalid_counts", f"counts[{key!r}] must be a number"
    elif type_ == "result":
        if "result" not in item:
            return "invalid_result", "a result item needs a result"
    elif type_ == "status":
        status = item.get("status")
        if status not in PRODUCER_STATUSES:
            return "invalid_status", f"status must be one of {', '.join(PRODUCER_STATUSES)}, got {status!r}"
        if "result" in item and status != "completed":
            return "invalid_status", "only a completed status carries a result"
        error = item.get("error")
        if error is not None and status != "failed":
            return "invalid_status", "only a failed status carries an error"
        if error is not None and not _error_fits(error, max_chars):
            return "invalid_error", f"error is a string or {{code, message}} of at most {max_chars} characters"
    return None


def _error_fits(error: Any, max_chars: int) -> bool:
    if isinstance(error, str):
        return len(error) <= max_chars
    if not isinstance(error, dict) or set(error) - {"code", "message"}:
        return False
    code, message = error.get("code", "producer_failed"), error.get("message", "")
    return isinstance(code, str) and 0 < len(code) <= 64 and isinstance(message, str) and len(message) <= max_chars


def check_items(items: Any, *, max_items: int, max_chars: int) -> list[dict[str, Any]]:
    """The batch if every item is well formed, else ``400 validation_error`` whose
    ``details`` name each bad item: ``[{index, path, code, message}]``. Nothing of a bad
    batch is applied."""
    if not isinstance(items, list):
        raise ValidationFailed("items must be an array", details=[{"path": "items", "message": "not an array"}])
    if len(items) > max_items:
        raise ValidationFailed(
            f"a report carries at most {max_items} items, this one {len(items)}: send several",
            code="batch_too_large",
            details={"max_items": max_items, "items": len(items)},
        )
    problems: list[dict[str, Any]] = []
    previous = 0
    ended_at: int | None = None
    for index, item in enumerate(items):
        problem = _item_problem(item, max_chars)
        n = item.get("n") if isinstance(item, dict) else None
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
            problem = problem or ("invalid_n", f"n must be an integer from 1 to 2^53-1 ({MAX_N})")
        elif n <= previous:
            problem = problem or ("n_not_increasing", f"n must grow within a batch: {n} follows {previous}")
        else:
            previous = n
            if ended_at is not None:
                problem = problem or ("item_after_end", f"nothing may follow the final status of items[{ended_at}]")
            elif problem is None and item["type"] == "status" and item["status"] != "running":
                ended_at = index
        if problem is not None:
            code, message = problem
            problems.append({"index": index, "path": f"items[{index}]", "code": code, "message": message})
    if problems:
        first = problems[0]
        raise ValidationFailed(f"{first['path']}: {first['message']}", details=problems)
    return items


# -- applying a batch --------------------------------------------------------------------


@dataclass
class Report:
    """What a report did: items applied and skipped, the highest ``n`` applied, the status."""

    applied: int
    skipped: int
    last_n: int
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "skipped": self.skipped, "last_n": self.last_n, "status": self.status}


class _KeyedLocks:
    """One lock per job while someone holds it: a process applies one report of a job at
    a time (the fences order processes; this keeps one process's journal state simple)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[int, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: int) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key) or (threading.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


_locks = _KeyedLocks()
#: ``time.monotonic()`` of the last report of each job this process applied.
_last_report: dict[int, float] = {}


@dataclass
class _Row:
    status: str
    owner_id: int
    kind: str
    producer_seq: int
    worker_id: str | None
    params: dict[str, Any]
    result: Any

    @property
    def holder(self) -> str:
        return self.worker_id or holder(self.producer_seq)


def _read(job_id: int) -> _Row | None:
    """The job's row as it is now (the session is released at once)."""
    try:
        row = db.session.execute(
            select(Job.status, Job.owner_id, Job.kind, Job.producer_seq, Job.worker_id, Job.params, Job.result).where(
                Job.id == job_id
            )
        ).first()
    finally:
        db.session.rollback()
    if row is None:
        return None
    return _Row(row[0], row[1], row[2], int(row[3] or 0), row[4], dict(row[5] or {}), row[6])


def _finished(job_id: int, row: _Row) -> Conflict:
    return Conflict(
        f"job {job_id} has ended ({row.status}): nothing more can be reported",
        code="job_finished",
        details={"status": row.status, "last_n": row.producer_seq},
    )


class _Chain:
    """A batch's durable writes, each fenced on the holder token the previous one left and
    moving it on: a token is never left twice, so no write can be applied twice."""

    def __init__(self, job_id: int, start: str) -> None:
        self.job_id = job_id
        self.holder = start

    def append(self, type_: str, data: dict[str, Any], snapshot: dict[str, Any], n: int | None) -> None:
        """Hand in a write for item ``n`` (None: the ``running`` a pending job's first item brings)."""
        fence = Fence.held_by(self.holder)
        if n is None:
            self.holder = f"{self.holder}+running"
            snapshot = {**snapshot, "worker_id": self.holder}
        else:
            self.holder = holder(n)
            snapshot = {**snapshot, "worker_id": self.holder, "producer_seq": n}
        pipeline.append(self.job_id, type_, data, snapshot=snapshot, fence=fence)


def apply_report(job_id: int, items: list[dict[str, Any]]) -> Report:
    """Apply the items of a checked batch (:func:`check_items`) whose ``n`` is new.

    ``409 job_finished`` (``details.status``) once the job has ended; ``409
    report_conflict`` when another report of the job was applied at the same moment (send
    the same batch again: what was applied is skipped).
    """
    with _locks.hold(job_id):
        try:
            return _apply(job_id, items)
        finally:
            pipeline.journal.forget(job_id)  # the next report (any process) learns the seq afresh
            _last_report[job_id] = time.monotonic()


def forget_idle(now: float | None = None) -> int:
    """Drop this process's progress state of jobs it heard no report of for ``IDLE_FORGET``
    seconds (their last tick went out long ago); returns how many."""
    moment = time.monotonic() if now is None else now
    forgotten = 0
    for job_id, at in list(_last_report.items()):
        if moment - at < IDLE_FORGET:
            continue
        with _locks.hold(job_id):
            if _last_report.get(job_id) == at:
                del _last_report[job_id]
                pipeline.forget(job_id)
                forgotten += 1
    return forgotten


def _apply(job_id: int, items: list[dict[str, Any]]) -> Report:
    row = _read(job_id)
    if row is None or row.kind != EXTERNAL:
        raise NotFound(f"job {job_id} not found")
    if row.status in {s.value for s in FINAL_STATUSES}:
        pipeline.forget(job_id)  # it may have ended on another process
        raise _finished(job_id, row)
    fresh = [item for item in items if item["n"] > row.producer_seq]
    report = Report(applied=0, skipped=len(items) - len(fresh), last_n=row.producer_seq, status=row.status)
    if not fresh:
        return report
    state = pipeline.progress_state(job_id, row.owner_id)
    if state.total is None and row.params.get("total") is not None:
        state.total = row.params["total"]
    chain = _Chain(job_id, row.holder)
    status, result = row.status, row.result
    durable_n = row.producer_seq
    slicer = Slicer()
    try:
        for item in fresh:
            slicer.tick()
            n, type_ = item["n"], item["type"]
            if status == JobStatus.PENDING.value:
                running = {"status": JobStatus.RUNNING.value}
                chain.append("job_status", running, {**running, "started_at": utcnow()}, None)
                status = JobStatus.RUNNING.value
            if type_ == "progress":
                _set_progress(state, item)
                continue
            if type_ == "log":
                chain.append("job_log", {"level": item.get("level", "info"), "message": item["message"]}, {}, n)
            elif type_ == "counts":
                counts = dict(item["counts"])
                chain.append("job_counts", counts, {"counts": counts}, n)
            elif type_ == "message":
                chain.append("job_message", {"message": item["message"]}, {"message": item["message"]}, n)
            elif type_ == "result":
                result = item["result"]
                chain.append("job_result", {"result": result}, {"result": result}, n)
            elif item["status"] == JobStatus.RUNNING.value:
                continue  # running already: nothing to say, but its n counts as applied
            else:
                status = item["status"]
                data, snapshot = _final_status(item, result)
                pipeline.flush(job_id)  # the last tick goes out before the final status
                chain.append("job_status", data, snapshot, n)
            durable_n = n
        pipeline.settle(job_id)
        last_n = fresh[-1]["n"]
        if last_n > durable_n:
            _move_holder(job_id, chain.holder, last_n)
    except (FenceRefused, SeqConflict, JobGone):
        now = _read(job_id)
        if now is None:
            raise NotFound(f"job {job_id} not found") from None
        if now.status in {s.value for s in FINAL_STATUSES}:
            pipeline.forget(job_id)
            raise _finished(job_id, now) from None
        raise Conflict(
            f"another report of job {job_id} was applied meanwhile; send this batch again "
            f"(items up to n={now.producer_seq} are applied and will be skipped)",
            code="report_conflict",
            details={"last_n": now.producer_seq},
        ) from None
    if status in {s.value for s in FINAL_STATUSES}:
        pipeline.forget(job_id)
    return Report(applied=len(fresh), skipped=report.skipped, last_n=fresh[-1]["n"], status=status)


def _set_progress(state: ProgressState, item: dict[str, Any]) -> None:
    """An absolute progress tick: the latest wins, the pipeline sends it when due."""
    state.current = item["current"]
    if item.get("total") is not None:
        state.total = item["total"]
    if item.get("message") is not None:
        state.message = item["message"]
    if not state.dirty:
        pipeline.mark_dirty(state)


def _final_status(item: dict[str, Any], result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, snapshot)`` of a producer's final status, as ``publish_status`` builds them."""
    status = item["status"]
    fields: dict[str, Any] = {}
    if status == JobStatus.COMPLETED.value:
        fields["result"] = item.get("result", result)
    elif status == JobStatus.FAILED.value:
        error = item.get("error") or "the producer reported a failure"
        if isinstance(error, str):
            error = {"code": "producer_failed", "message": error}
        fields["error"] = {"code": error.get("code", "producer_failed"), "message": error.get("message", "")}
    if item.get("message") is not None:
        fields["message"] = item["message"]
    data = {"status": status, **fields}
    return data, {"status": status, "finished_at": utcnow(), "lease_expires_at": None, **fields}


def _move_holder(job_id: int, current: str, n: int) -> None:
    """Record ``n`` for progress items that wrote no event: the same compare-and-set."""
    jobs = Job.__table__
    with write_transaction() as conn:
        moved = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.worker_id == current, jobs.c.status.in_(ACTIVE_STATUSES))
            .values(worker_id=holder(n), producer_seq=n)
        ).rowcount
    if not moved:
        raise FenceRefused(job_id, "changed", current)


# -- ending without the producer ---------------------------------------------------------


def cancel_external(job_id: int) -> bool:
    """A user's cancel: the job ends ``cancelled`` now (its producer learns it from its
    next report). False when it had ended already."""
    return _end(job_id, JobStatus.CANCELLED)


def _end(job_id: int, status: JobStatus, **fields: Any) -> bool:
    """End an external job under the holder fence, whatever report races with it."""
    with _locks.hold(job_id):
        try:
            for _ in range(END_ATTEMPTS):
                row = _read(job_id)
                if row is None or row.status in {s.value for s in FINAL_STATUSES}:
                    return False
                pipeline.flush(job_id)
                try:
                    pipeline.publish_status(
                        job_id, status.value, fence=Fence.held_by(row.holder), finished_at=utcnow(), **fields
                    )
                except FenceRefused:
                    pipeline.journal.forget(job_id)  # a report moved the holder: read again
                    continue
                pipeline.forget(job_id)
                return True
            return False
        finally:
            pipeline.journal.forget(job_id)


def expire_producers(now: datetime | None = None) -> int:
    """Fail the active external jobs whose producer token has expired; returns how many."""
    moment = now or utcnow()
    try:
        job_ids = list(
            db.session.scalars(
                select(Job.id)
                .where(
                    Job.kind == EXTERNAL,
                    Job.status.in_(ACTIVE_STATUSES),
                    Job.producer_expires_at < moment,
                )
                .order_by(Job.id)
                .limit(SWEEP_BATCH)
            )
        )
    finally:
        db.session.rollback()
    ended = 0
    for job_id in job_ids:
        try:
            if _end(job_id, JobStatus.FAILED, error=dict(EXPIRED_ERROR)):
                log.warning("external job %s failed: its producer token expired", job_id)
                ended += 1
        except JobGone:
            pass
    return ended


def start_expiry_sweep(app: Flask) -> None:
    """Look for expired producers now and a few times per token lifetime (at most every 30 s);
    drop the progress state of jobs idle here."""
    interval = min(30.0, max(0.25, float(app.config["PRODUCER_TOKEN_TTL_SECONDS"]) / 4))

    def loop() -> None:
        while True:
            try:
                forget_idle()
                with app.app_context():
                    expire_producers()
                    db.session.remove()
            except Exception:
                log.exception("expiring external jobs failed (next try in %.0f s)", interval)
            socketio.sleep(interval)

    socketio.start_background_task(loop)
