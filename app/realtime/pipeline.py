"""The one publish path: every job update passes here, whatever protocol reads it.

Durable events get the job's next ``seq`` and are committed together with the job's
snapshot in one short transaction, then emitted through Flask-SocketIO (in-memory or
Redis-backed) to ``job:<id>`` and the owner's all-jobs room. Progress ticks are absolute,
so the coalescer keeps only the latest per job and emits at most one per interval; the
latest also rides along with every durable write and is persisted every
``PROGRESS_PERSIST_INTERVAL``.

Adapters (seed dialects) may derive extra emits from a message; they never write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import Update, bindparam, insert, update

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


_jobs = Job.__table__
_events = JobEvent.__table__
#: Durable-event insert; Core compiles it once and reuses it (no ORM work per event).
_INSERT_EVENT = insert(_events)
#: Progress-only row update, run as one executemany for every job behind.
_SAVE_PROGRESS = update(_jobs).where(_jobs.c.id == bindparam("_job_id")).values(progress=bindparam("_progress"))
_next_seq_statements: dict[frozenset[str], Update] = {}


def _next_seq_statement(columns: frozenset[str]) -> Update:
    """``last_seq + 1`` plus these snapshot columns, built once per column set.

    Building an ORM ``update(Job).values(...)`` costs more than the SQLite write itself
    (coercion and cache-key work on every call); a prepared Core statement with bind
    parameters skips all of it.
    """
    statement = _next_seq_statements.get(columns)
    if statement is None:
        snapshot = {_jobs.c[name]: bindparam(f"_v_{name}") for name in columns}
        statement = (
            update(_jobs)
            .where(_jobs.c.id == bindparam("_job_id"))
            .values({_jobs.c.last_seq: _jobs.c.last_seq + 1, **snapshot})
            .returning(_jobs.c.last_seq, _jobs.c.owner_id)
        )
        _next_seq_statements[columns] = statement
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
        self, job_id: int, type_: str, data: dict[str, Any], *, snapshot: dict[str, Any] | None = None
    ) -> Message:
        """Commit a durable event (and snapshot changes) with the next seq, then emit it."""
        state = self._states.get(job_id)
        if state is not None and state.dirty:
            self._flush_one(state, time.monotonic())
        values: dict[str, Any] = dict(snapshot or {})
        if state is not None and state.last_payload is not None:
            values["progress"] = state.last_payload
            state.unsaved = False
        moment = utcnow()
        statement = _next_seq_statement(frozenset(values))
        with write_transaction() as conn:
            params = {f"_v_{name}": value for name, value in values.items()}
            row = conn.execute(statement, {"_job_id": job_id, **params}).first()
            if row is None:
                raise JobGone(job_id)
            seq, owner_id = row
            event = {"job_id": job_id, "seq": seq, "type": type_, "data": data, "created_at": moment}
            conn.execute(_INSERT_EVENT, event)
        message = make_message(type_, data, job_id=job_id, seq=seq, moment=moment)
        self._emit(message, owner_id, (job_room(job_id), user_jobs_room(owner_id)))
        return message

    def publish_status(self, job_id: int, status: str, **fields: Any) -> Message:
        """A ``job_status`` event; ``fields`` go into both the snapshot and the data."""
        data = {"status": status}
        data.update({k: v for k, v in fields.items() if k in ("result", "error", "message")})
        snapshot: dict[str, Any] = {"status": status, **fields}
        return self.publish(job_id, "job_status", data, snapshot=snapshot)

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
        pending = [s for s in list(self._states.values()) if s.unsaved and s.last_payload]
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
