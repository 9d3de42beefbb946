"""The one publish path: every job update passes here, whatever protocol reads it.

Durable events are handed to the journal (:mod:`.journal`), which commits them with the
job's next ``seq`` and snapshot — many per transaction, off the event loop — and hands
them back in commit order; only then are they emitted. Progress ticks are absolute, so
each job keeps only its latest and sends at most one per interval, on a phase of its own
(jobs do not all tick at the same instant); the latest rides along with every durable
write and is persisted every ``PROGRESS_PERSIST_INTERVAL``.

Every message leaves through one outbox (:class:`~.delivery.Outbox`), drained by one
background loop: whoever publishes — a job, a request — never waits for the watchers, and
messages leave in the order they were committed or ticked. The ticker, a background loop
itself, sends its ticks in its own turn when nothing waits in the outbox.

Every durable write is *fenced* (:class:`Fence`): the same UPDATE that takes the seq
checks that the writer may still write, so a worker that lost its job can never append
after the terminal event. A refused write raises :class:`FenceRefused`.

Adapters (seed dialects) may derive extra emits from a message; they never write.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from ..concurrency import Signal, Slicer, new_signal, non_yielding_lock
from ..extensions import db, socketio
from ..metrics import MESSAGES_PUBLISHED, PROGRESS_TICKS, DeferredCount
from ..models import utcnow
from .delivery import Outbox
from .journal import ACTIVE_STATUSES, NO_FENCE, EventWrite, Fence, FenceRefused, JobGone, Journal
from .messages import Message, make_message
from .rooms import job_room, user_jobs_room

log = logging.getLogger(__name__)

DURABLE_PUBLISHED = MESSAGES_PUBLISHED.labels("durable")
#: Ticks sent (the ticker runs hundreds of rounds a second: counted without a lock).
TICKS_SENT = DeferredCount(PROGRESS_TICKS, MESSAGES_PUBLISHED.labels("progress"))
#: The ticker's slot, as a share of the progress interval (5 ms of 100 ms): a tick waits
#: at most that much longer, so that ticks due close together leave in one wake-up.
TICK_SLOT = 0.05
#: Slack, in slots, when a moment is put on the slot grid: ``sent_at + interval`` is a
#: whole number of slots only up to float error, and rounding that error up moved a job's
#: tick one slot later, again and again, until it fell behind the job's next step and the
#: step's tick was lost (about 3 in 100 at 200 jobs).
SLOT_SLACK = 1e-6

#: ``send(message, owner_id, rooms)``: how a tick leaves (the outbox's ``put`` or ``send_or_put``).
Send = Callable[[Message, int, tuple[str, ...]], None]
#: ``adapter(message, owner_id) -> [(rooms, event, payload), ...]``
Adapter = Callable[[Message, int], Iterable[tuple[list[str], str, dict[str, Any]]]]

__all__ = ["ACTIVE_STATUSES", "Fence", "FenceRefused", "JobGone", "Pipeline", "ProgressState", "pipeline"]


def next_tick_due(now: float, sent_at: float, interval: float) -> float:
    """When a job's next tick is due: one interval after its last (or now, if later),
    rounded up to the ticker's slot."""
    slot = interval * TICK_SLOT
    return math.ceil(max(now, sent_at + interval) / slot - SLOT_SLACK) * slot


def slot_start(now: float, interval: float) -> float:
    """The start of the ticker's slot holding ``now``."""
    slot = interval * TICK_SLOT
    return math.floor(now / slot + SLOT_SLACK) * slot


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
    dirty: bool = False
    unsaved: bool = False
    #: ``time.monotonic()`` of the job's last tick: the next is due an interval later.
    sent_at: float = -math.inf
    #: ``time.monotonic()`` until which this process surely holds the job's lease; past it
    #: ticks are dropped (a peer may have ended the job: nothing may follow its end).
    lease_until: float = math.inf
    started: float = field(default_factory=time.monotonic)
    rate: float | None = None
    _rate_mark: tuple[float, float] | None = None
    #: The last tick's ``data`` (the message's own dict, never changed once sent).
    last_data: dict[str, Any] | None = None
    #: Where ticks go: the job's room, the owner's all-jobs room, and any added rooms.
    rooms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.rooms = (job_room(self.job_id), user_jobs_room(self.owner_id))

    def also_send_to(self, rooms: tuple[str, ...]) -> None:
        """Ticks go to ``rooms`` too (the uploader's client room), besides the job's own."""
        self.rooms = (*self.rooms[:2], *rooms)

    @property
    def last_payload(self) -> dict[str, Any] | None:
        """The last tick as stored on the job (``type`` and its data); built when asked
        (persisting, a snapshot), not per tick."""
        if self.last_data is None:
            return None
        return {"type": self.type, **self.last_data}

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
        self.last_data = data
        return data


class Pipeline:
    """Publishes job events; one instance per process, bound with ``init_app``."""

    def __init__(self) -> None:
        self.interval = 0.1
        self.persist_interval = 1.0
        self._states: dict[int, ProgressState] = {}
        #: ``(due, order, state)`` for every job with a tick waiting: each job's own phase.
        self._due: list[tuple[float, int, ProgressState]] = []
        self._order = 0
        self._lock = non_yielding_lock()
        self._adapters: list[Adapter] = []
        self._ticker_wake: Signal | None = None
        self._app: Flask | None = None
        self.journal = Journal(self._committed)
        self.outbox = Outbox(self._emit)

    def init_app(self, app: Flask) -> None:
        """Read the intervals; the ticker starts with the first progress tick."""
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
        fence: Fence = NO_FENCE,
    ) -> Message:
        """Commit a durable event (and snapshot changes) with the next seq; it is emitted
        once committed. Returns the message (its ``seq`` set).

        Raises :class:`FenceRefused` when ``fence`` does not hold, :class:`JobGone` when the
        row is missing; nothing is written or sent then.
        """
        write = self.journal.write(db.engine, self._event_write(job_id, type_, data, snapshot, fence))
        assert write.message is not None
        return write.message

    def append(
        self, job_id: int, type_: str, data: dict[str, Any], *, snapshot: dict[str, Any] | None = None, fence: Fence
    ) -> int:
        """A running job's durable event: its seq at once, the commit (then the emit)
        behind it — the job does not wait for the disk. Raises the error of an earlier
        write of the job that could not be stored (see :meth:`settle`)."""
        return self.journal.append(db.engine, self._event_write(job_id, type_, data, snapshot, fence))

    def settle(self, job_id: int) -> None:
        """Wait until the job's appended events are stored; raise if one could not be."""
        self.journal.settle(job_id)

    def _event_write(
        self, job_id: int, type_: str, data: dict[str, Any], snapshot: dict[str, Any] | None, fence: Fence
    ) -> EventWrite:
        values: dict[str, Any] = dict(snapshot or {})
        state = self._states.get(job_id)
        if state is not None and state.last_payload is not None:
            values["progress"] = state.last_payload
            state.unsaved = False
        return EventWrite(job_id, type_, data, values, fence, utcnow())

    def publish_status(self, job_id: int, status: str, *, fence: Fence = NO_FENCE, **fields: Any) -> Message:
        """A ``job_status`` event; ``fields`` go into both the snapshot and the data.

        A final status also ends the lease (the row keeps ``worker_id``: who ran it).
        """
        data = {"status": status}
        data.update({k: v for k, v in fields.items() if k in ("result", "error", "message")})
        snapshot: dict[str, Any] = {"status": status, **fields}
        if status not in ACTIVE_STATUSES:
            snapshot["lease_expires_at"] = None
        return self.publish(job_id, "job_status", data, snapshot=snapshot, fence=fence)

    def _committed(self, writes: list[EventWrite]) -> None:
        """From the journal's writer, in commit order: build each message, send it on."""
        slicer = Slicer()
        DURABLE_PUBLISHED.inc(len(writes))
        for write in writes:
            slicer.tick()
            assert write.seq is not None and write.owner_id is not None
            message = make_message(write.type, write.data, job_id=write.job_id, seq=write.seq, moment=write.created_at)
            write.message = message
            self.outbox.put(message, write.owner_id, (job_room(write.job_id), user_jobs_room(write.owner_id)))

    # -- progress ticks ------------------------------------------------------------

    def progress_state(self, job_id: int, owner_id: int) -> ProgressState:
        """The job's progress state, created on first use."""
        state = self._states.get(job_id)
        if state is None:
            state = self._states.setdefault(job_id, ProgressState(job_id, owner_id))
        return state

    def mark_dirty(self, state: ProgressState) -> None:
        """Called by a job on its first tick since the last one went out (cheap): the tick
        is due one interval after the job's previous one, or now."""
        state.dirty = True
        now = time.monotonic()
        # Rounded up to the ticker's slot: ticks due within one slot leave together, one
        # wake-up of the ticker (and of the outbox) for all of them, not one per job.
        due = next_tick_due(now, state.sent_at, self.interval)
        with self._lock:
            self._order += 1
            heapq.heappush(self._due, (due, self._order, state))
            earliest = self._due[0][2] is state
            wake = self._ticker_wake
            if wake is None:
                wake = self._ticker_wake = new_signal()  # built lazily: after monkey-patching
                socketio.start_background_task(self._ticker)
        if earliest:
            wake.set()

    def latest_progress(self, job_id: int) -> dict[str, Any] | None:
        """The newest tick this process knows for a job (fresher than the row)."""
        state = self._states.get(job_id)
        return state.last_payload if state is not None else None

    def flush(self, job_id: int) -> None:
        """Send a job's pending tick now (before its final status), through the outbox:
        the job does not wait for its watchers."""
        state = self._states.get(job_id)
        if state is not None and state.dirty and self._send_tick(state, time.monotonic(), self.outbox.put):
            TICKS_SENT.pending += 1

    def forget(self, job_id: int) -> None:
        """Drop a finished job's progress state (its last tick is on the row) and what the
        journal knew of it."""
        self.journal.forget(job_id)
        state = self._states.pop(job_id, None)
        if state is not None:
            state.dirty = False  # its heap entry is skipped when due

    def _send_tick(self, state: ProgressState, now: float, send: Send) -> bool:
        """Send the job's tick with ``send``; False when its lease may have passed (dropped)."""
        state.dirty = False
        # On the slot grid, so a job's phase does not drift a little later every tick
        # (a job stepping once per interval would then lose a tick now and then).
        state.sent_at = slot_start(now, self.interval)
        if now > state.lease_until:
            return False
        data = state.payload(now)
        state.unsaved = True
        message = make_message(state.type, data, job_id=state.job_id)
        send(message, state.owner_id, state.rooms)
        return True

    def _ticker(self) -> None:
        """Background loop: send each job's tick when it is due; persist now and then."""
        assert self._ticker_wake is not None
        last_persist = time.monotonic()
        while True:
            now = time.monotonic()
            due_states: list[ProgressState] = []
            with self._lock:
                while self._due and self._due[0][0] <= now:
                    due_states.append(heapq.heappop(self._due)[2])
                next_due = self._due[0][0] if self._due else None
            sent = 0
            slicer = Slicer()
            for state in due_states:
                # (A stale entry, e.g. from before an explicit flush, is skipped: the
                # job's newer entry sends its tick on time.)
                if state.dirty and now >= state.sent_at + self.interval * 0.99:
                    try:
                        # Sent from here: the outbox's own loop would only be woken for it.
                        sent += self._send_tick(state, now, self.outbox.send_or_put)
                    except Exception:
                        log.exception("progress tick failed for job %s", state.job_id)
                    slicer.tick()
            if sent:
                TICKS_SENT.pending += sent
            if now - last_persist >= self.persist_interval:
                last_persist = now
                self._persist_progress()
            wait = self.persist_interval if next_due is None else max(0.0, next_due - time.monotonic())
            self._ticker_wake.wait(min(wait, self.persist_interval))

    def _persist_progress(self) -> None:
        """Hand the journal the latest tick of each job whose row is behind."""
        now = time.monotonic()
        pending = [s for s in list(self._states.values()) if s.unsaved and s.last_data and now <= s.lease_until]
        if not pending or self._app is None:
            return
        rows = [{"_job_id": state.job_id, "_progress": state.last_payload} for state in pending]
        for state in pending:
            state.unsaved = False
        with self._app.app_context():
            self.journal.save_progress(db.engine, rows)

    # -- emitting --------------------------------------------------------------------

    def _emit(self, message: Message, owner_id: int, rooms: Iterable[str]) -> None:
        """From the outbox's loop: to the rooms, then whatever the adapters derive."""
        # Straight to the client manager (what ``socketio.emit`` ends in, past two layers
        # of argument handling per message): the local fan-out, or Redis for every process.
        socketio.server.manager.emit(message["type"], message, "/", room=list(rooms))
        for adapter in self._adapters:
            for extra_rooms, event, payload in adapter(message, owner_id):
                socketio.emit(event, payload, to=extra_rooms)


#: The process's pipeline.
pipeline = Pipeline()
