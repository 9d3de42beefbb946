"""The one publish path: every job update passes here, whatever protocol reads it.

Durable events get the job's next ``seq`` and are committed together with the job's
snapshot in one short transaction, then emitted through Flask-SocketIO (in-memory or
Redis-backed) to ``job:<id>`` and the owner's all-jobs room. Progress ticks are absolute,
so the coalescer keeps only the latest per job and emits at most one per interval; the
latest also rides along with every durable write and is persisted every
``PROGRESS_PERSIST_INTERVAL``.

Every durable write is *fenced*: the same UPDATE that takes the next seq also checks that
the writer may still write (:class:`Fence`) — the job is active and held by the writer's
lease — so a worker that lost its job (paused past its lease, then swept by a peer) can
never append after the terminal event. A refused write raises :class:`FenceRefused`.

Adapters (seed dialects) may derive extra emits from a message; they never write.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import ColumnElement, Update, bindparam, insert, select, true, update

from ..database import write_transaction
from ..extensions import socketio
from ..models import Job, JobEvent, utcnow
from .messages import Message, make_message
from .rooms import job_room, user_jobs_room

log = logging.getLogger(__name__)

#: ``adapter(message, owner_id) -> [(rooms, event, payload), ...]``
Adapter = Callable[[Message, int], Iterable[tuple[list[str], str, dict[str, Any]]]]


class JobGone(LookupError):
    """The job row no longer exists (deleted while running)."""


class FenceRefused(RuntimeError):
    """The writer may no longer write this job (finished, or held by someone else)."""

    def __init__(self, job_id: int, status: str, holder: str | None) -> None:
        super().__init__(f"job {job_id} is {status}, held by {holder or 'nobody'}: write refused")
        self.job_id = job_id
        self.status = status
        self.holder = holder


ACTIVE_STATUSES = ("pending", "running")


@dataclass(frozen=True)
class Fence:
    """Who may append to a job's history; checked inside the write that takes the seq.

    Build one with :meth:`held_by` (the job's runner), :meth:`unclaimed` (cancelling a job
    nobody holds yet) or :meth:`lease_expired` (a peer settling a dead worker's job). The
    bare ``Fence()`` only asks that the row exists (a job's very first event).
    """

    mode: str = "none"
    holder: str | None = None
    now: datetime | None = None

    @classmethod
    def held_by(cls, worker_id: str) -> Fence:
        return cls("held", holder=worker_id)

    @classmethod
    def unclaimed(cls) -> Fence:
        return cls("unclaimed")

    @classmethod
    def lease_expired(cls, now: datetime) -> Fence:
        return cls("expired", now=now)

    def params(self) -> dict[str, Any]:
        """Bind values for the fence's condition."""
        return {"_holder": self.holder} if self.mode == "held" else {"_now": self.now} if self.mode == "expired" else {}


_jobs = Job.__table__
_events = JobEvent.__table__
#: Durable-event insert; Core compiles it once and reuses it (no ORM work per event).
_INSERT_EVENT = insert(_events)
#: Progress-only row update, run as one executemany for every job behind.
_SAVE_PROGRESS = (
    update(_jobs)
    .where((_jobs.c.id == bindparam("_job_id")) & _jobs.c.status.in_(ACTIVE_STATUSES))
    .values(progress=bindparam("_progress"))
)
_next_seq_statements: dict[tuple[frozenset[str], str], Update] = {}


def _fence_condition(mode: str) -> ColumnElement[bool]:
    active = _jobs.c.status.in_(ACTIVE_STATUSES)
    if mode == "held":
        return active & (_jobs.c.worker_id == bindparam("_holder"))
    if mode == "unclaimed":
        return (_jobs.c.status == "pending") & _jobs.c.worker_id.is_(None)
    if mode == "expired":
        return active & (_jobs.c.lease_expires_at < bindparam("_now"))
    return true()


def _next_seq_statement(columns: frozenset[str], fence_mode: str) -> Update:
    """``last_seq + 1`` plus these snapshot columns under a fence, built once per shape.

    Building an ORM ``update(Job).values(...)`` costs more than the SQLite write itself
    (coercion and cache-key work on every call); a prepared Core statement with bind
    parameters skips all of it.
    """
    key = (columns, fence_mode)
    statement = _next_seq_statements.get(key)
    if statement is None:
        snapshot = {_jobs.c[name]: bindparam(f"_v_{name}") for name in columns}
        statement = (
            update(_jobs)
            .where((_jobs.c.id == bindparam("_job_id")) & _fence_condition(fence_mode))
            .values({_jobs.c.last_seq: _jobs.c.last_seq + 1, **snapshot})
            .returning(_jobs.c.last_seq, _jobs.c.owner_id)
        )
        _next_seq_statements[key] = statement
    return statement


@dataclass(eq=False)
class ProgressState:
    """The latest progress of one job; written by the job, read by the flusher."""

    job_id: int
    owner_id: int
    type: str = "job_progress"
    current: float = 0
    total: float | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Rooms beyond the job's own that also get its ticks (the uploader's client room).
    extra_rooms: tuple[str, ...] = ()
    dirty: bool = False
    unsaved: bool = False
    #: ``time.monotonic()`` until which this process surely holds the job's lease; past it
    #: ticks are dropped (a peer may have ended the job: nothing may follow its end).
    lease_until: float = math.inf
    started: float = field(default_factory=time.monotonic)
    rate: float | None = None
    _rate_mark: tuple[float, float] | None = None
    last_payload: dict[str, Any] | None = None

    def payload(self, now: float) -> dict[str, Any]:
        """The tick's ``data``: absolute values plus derived percent, rate and ETA."""
        current, total = self.current, self.total
        if self._rate_mark is None:
            self._rate_mark = (self.started, 0.0)
        mark_time, mark_value = self._rate_mark
        elapsed = now - mark_time
        if elapsed >= 0.05:
            instant = (current - mark_value) / elapsed
            self.rate = instant if self.rate is None else 0.7 * self.rate + 0.3 * instant
            self._rate_mark = (now, float(current))
        percent = None
        eta = None
        if total:
            percent = round(min(100.0, max(0.0, current * 100.0 / total)), 2)
            if self.rate and self.rate > 0:
                eta = round(max(0.0, (total - current) / self.rate), 2)
        data: dict[str, Any] = {
            "current": current,
            "total": total,
            "percent": percent,
            "rate": round(self.rate, 3) if self.rate is not None else None,
            "eta": eta,
            "message": self.message,
        }
        if self.extra:
            data.update(self.extra)
        self.last_payload = {"type": self.type, **data}
        return data


class Pipeline:
    """Publishes job events; one instance per process, bound with ``init_app``."""

    def __init__(self) -> None:
        self.interval = 0.1
        self.persist_interval = 1.0
        self._states: dict[int, ProgressState] = {}
        self._dirty: set[ProgressState] = set()
        self._lock = threading.Lock()
        self._adapters: list[Adapter] = []
        self._flusher_started = False
        self._app: Flask | None = None

    def init_app(self, app: Flask) -> None:
        """Read the intervals; the flusher starts with the first progress tick."""
        self._app = app
        self.interval = float(app.config["PROGRESS_INTERVAL"])
        self.persist_interval = float(app.config["PROGRESS_PERSIST_INTERVAL"])
        app.extensions["herald_pipeline"] = self

    def add_adapter(self, adapter: Adapter) -> None:
        """Register a dialect adapter (idempotent)."""
        if adapter not in self._adapters:
            self._adapters.append(adapter)

    # -- durable events -------------------------------------------------------------

    def publish(
        self,
        job_id: int,
        type_: str,
        data: dict[str, Any],
        *,
        snapshot: dict[str, Any] | None = None,
        fence: Fence = Fence(),
    ) -> Message:
        """Commit a durable event (and snapshot changes) with the next seq, then emit it.

        Raises :class:`FenceRefused` when ``fence`` does not hold, :class:`JobGone` when the
        row is missing; nothing is written or sent then.
        """
        state = self._states.get(job_id)
        if state is not None and state.dirty:
            self._flush_one(state, time.monotonic())
        values: dict[str, Any] = dict(snapshot or {})
        if state is not None and state.last_payload is not None:
            values["progress"] = state.last_payload
            state.unsaved = False
        moment = utcnow()
        statement = _next_seq_statement(frozenset(values), fence.mode)
        with write_transaction() as conn:
            params = {f"_v_{name}": value for name, value in values.items()}
            row = conn.execute(statement, {"_job_id": job_id, **params, **fence.params()}).first()
            if row is None:
                current = conn.execute(select(_jobs.c.status, _jobs.c.worker_id).where(_jobs.c.id == job_id)).first()
                if current is None:
                    raise JobGone(job_id)
                raise FenceRefused(job_id, current.status, current.worker_id)
            seq, owner_id = row
            event = {"job_id": job_id, "seq": seq, "type": type_, "data": data, "created_at": moment}
            conn.execute(_INSERT_EVENT, event)
        message = make_message(type_, data, job_id=job_id, seq=seq, moment=moment)
        self._emit(message, owner_id, (job_room(job_id), user_jobs_room(owner_id)))
        return message

    def publish_status(self, job_id: int, status: str, *, fence: Fence = Fence(), **fields: Any) -> Message:
        """A ``job_status`` event; ``fields`` go into both the snapshot and the data.

        A final status also ends the lease (the row keeps ``worker_id``: who ran it).
        """
        data = {"status": status}
        data.update({k: v for k, v in fields.items() if k in ("result", "error", "message")})
        snapshot: dict[str, Any] = {"status": status, **fields}
        if status not in ACTIVE_STATUSES:
            snapshot["lease_expires_at"] = None
        return self.publish(job_id, "job_status", data, snapshot=snapshot, fence=fence)

    # -- progress ticks ------------------------------------------------------------

    def progress_state(self, job_id: int, owner_id: int) -> ProgressState:
        """The job's progress state, created on first use."""
        state = self._states.get(job_id)
        if state is None:
            state = self._states.setdefault(job_id, ProgressState(job_id, owner_id))
        return state

    def mark_dirty(self, state: ProgressState) -> None:
        """Called by a job on its first tick since the last flush (cheap)."""
        state.dirty = True
        self._dirty.add(state)
        if not self._flusher_started:
            self._start_flusher()

    def latest_progress(self, job_id: int) -> dict[str, Any] | None:
        """The newest tick this process knows for a job (fresher than the row)."""
        state = self._states.get(job_id)
        return state.last_payload if state is not None else None

    def flush(self, job_id: int) -> None:
        """Emit a job's pending tick now (before its final status)."""
        state = self._states.get(job_id)
        if state is not None and state.dirty:
            self._flush_one(state, time.monotonic())

    def forget(self, job_id: int) -> None:
        """Drop a finished job's progress state (its last tick is on the row)."""
        state = self._states.pop(job_id, None)
        if state is not None:
            self._dirty.discard(state)

    def _flush_one(self, state: ProgressState, now: float) -> None:
        state.dirty = False
        self._dirty.discard(state)
        if now > state.lease_until:
            return
        data = state.payload(now)
        state.unsaved = True
        message = make_message(state.type, data, job_id=state.job_id)
        rooms = (job_room(state.job_id), user_jobs_room(state.owner_id), *state.extra_rooms)
        self._emit(message, state.owner_id, rooms)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_started:
                return
            self._flusher_started = True
        socketio.start_background_task(self._flusher)

    def _flusher(self) -> None:
        """Background loop: one tick per dirty job per interval; persist now and then.

        It keeps a fixed cadence (sleeps until the next deadline, not a whole interval after
        its own work), so hundreds of jobs still tick ``1 / interval`` times a second; when
        it falls behind it starts a new cadence instead of bursting to catch up.
        """
        last_persist = time.monotonic()
        deadline = last_persist
        while True:
            deadline += self.interval
            socketio.sleep(max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            if now - deadline > self.interval:
                deadline = now
            for state in list(self._dirty):
                try:
                    self._flush_one(state, now)
                except Exception:  # a broken socket must not stop every job's progress
                    log.exception("progress flush failed for job %s", state.job_id)
            if now - last_persist >= self.persist_interval:
                last_persist = now
                self._persist_progress()

    def _persist_progress(self) -> None:
        """Write the latest tick of each job whose row is behind (one short transaction)."""
        now = time.monotonic()
        pending = [s for s in list(self._states.values()) if s.unsaved and s.last_payload and now <= s.lease_until]
        if not pending or self._app is None:
            return
        try:
            rows = [{"_job_id": state.job_id, "_progress": state.last_payload} for state in pending]
            for state in pending:
                state.unsaved = False
            with self._app.app_context(), write_transaction() as conn:
                conn.execute(_SAVE_PROGRESS, rows)
        except Exception:
            log.exception("persisting progress failed")

    # -- emitting --------------------------------------------------------------------

    def notify(self, rooms: Iterable[str], type_: str, data: dict[str, Any]) -> Message:
        """A user-level notice (not a job event) to the given rooms."""
        message = make_message(type_, data)
        socketio.emit(type_, message, to=list(rooms))
        return message

    def _emit(self, message: Message, owner_id: int, rooms: Iterable[str]) -> None:
        socketio.emit(message["type"], message, to=list(rooms))
        for adapter in self._adapters:
            for extra_rooms, event, payload in adapter(message, owner_id):
                socketio.emit(event, payload, to=extra_rooms)


#: The process's pipeline.
pipeline = Pipeline()
