"""The webhook dispatcher: job events in, signed POSTs out, every attempt recorded.

One background task per serving process (started in ``on_serving``), every
``WEBHOOK_DISPATCH_INTERVAL``:

1. **Ingest.** Reads ``job_events`` past the durable cursor (``webhook_cursor``) and turns
   each ``job_status`` event into one delivery row per matching webhook (inserted with
   ``ON CONFLICT DO NOTHING`` on ``(webhook, event row, name)``, so two processes reading the
   same events add each delivery once). Terminal statuses are committed to ``job_events``
   before they are published, so a delivery exists for every job end whatever crashed. Ids
   can commit out of order (PostgreSQL), so the cursor only moves over ids seen without a
   gap; a gap is passed once the event after it is ``GAP_GRACE`` old (a rolled-back id).
2. **Send.** Claims due deliveries in one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
   LOCKED)`` that counts the attempt and pushes ``next_attempt_at`` past the attempt's
   timeout: two processes never send the same attempt, and one that dies mid-send leaves
   the delivery due again. Each claimed delivery is POSTed in its own task (``requests``,
   green under eventlet) with ``WEBHOOK_TIMEOUT_SECONDS``, redirects not followed. A 2xx
   answer delivers it; anything else is retried after ``WEBHOOK_RETRY_BASE_SECONDS`` ×
   2^(attempt-1) (at most an hour) until ``WEBHOOK_RETRY_FOR_SECONDS`` after the event, then
   it is ``failed``. An outcome is recorded only by the claim that made the attempt.
   Deliveries are not ordered, not even one job's (a later event never waits for an earlier
   one being retried): each body carries the event's ``job.seq`` and ``timestamp``, by
   which receivers order them (docs/PLATFORM.md, "Webhooks").
3. **Trim.** ``trim`` (``retention.py``) deletes finished deliveries past
   ``WEBHOOK_DELIVERY_RETENTION_DAYS``; the runner's heartbeat calls it with the history trim.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import requests
from flask import Flask
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..concurrency import DeadlineExceeded, deadline
from ..database import write_transaction
from ..extensions import db, socketio
from ..metrics import WEBHOOK_DELIVERIES
from ..models import Job, JobEvent, Webhook, WebhookCursor, WebhookDelivery, isoformat, utcnow
from . import retention
from .signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature_header
from .store import JOB_END_EVENTS
from .targets import HostRefused, check_resolved, normalise_hosts

log = logging.getLogger(__name__)

_events = JobEvent.__table__
_jobs = Job.__table__
_hooks = Webhook.__table__
_deliveries = WebhookDelivery.__table__
_cursor = WebhookCursor.__table__

CURSOR = "job_events"
#: Events read per pass (a pass that reads a full batch goes on at once).
BATCH = 2000
#: How long a hole in the event ids is waited for before the cursor passes it.
GAP_GRACE = timedelta(seconds=30)
#: Longest wait between two attempts of one delivery.
MAX_BACKOFF = 3600.0
#: Attempts in flight per process.
MAX_IN_FLIGHT = 8
#: Characters of an error kept on the delivery.
MAX_ERROR = 500
#: Delivery rows built, or inserted in one transaction, between two yields to the event
#: loop (about 3 ms of work): a dispatcher behind on events never holds the loop for long.
YIELD_EVERY = 500


def event_names(status: str, subscribed: list[str]) -> list[str]:
    """The event names a ``job_status`` event with ``status`` is, for a webhook asking for ``subscribed``."""
    names = []
    if f"job.{status}" in JOB_END_EVENTS and (f"job.{status}" in subscribed or "*" in subscribed):
        names.append(f"job.{status}")
    if "job.status" in subscribed:
        names.append("job.status")
    return names


def backoff(attempt: int, base: float) -> float:
    """Seconds before the attempt after ``attempt`` (1-based): doubling, at most an hour."""
    return float(min(base * 2 ** max(attempt - 1, 0), MAX_BACKOFF))


class Dispatcher:
    """The process's webhook dispatcher; bound with ``init_app``, started by ``start``."""

    def __init__(self) -> None:
        self.allowed: frozenset[str] = frozenset()
        self.retry_base = 30.0
        self.retry_for = 86400.0
        self.timeout = 5.0
        self.interval = 1.0
        #: How long finished deliveries are kept (``None``: forever).
        self.retention: timedelta | None = timedelta(days=30)
        self._app: Flask | None = None
        self._started = False
        self._lock = threading.Lock()
        self._in_flight = 0

    def init_app(self, app: Flask) -> None:
        """Read the allowlist, retry schedule and timing from config."""
        self._app = app
        self.allowed = normalise_hosts(app.config["WEBHOOK_ALLOWED_HOSTS"])
        self.retry_base = float(app.config["WEBHOOK_RETRY_BASE_SECONDS"])
        self.retry_for = float(app.config["WEBHOOK_RETRY_FOR_SECONDS"])
        self.timeout = float(app.config["WEBHOOK_TIMEOUT_SECONDS"])
        self.interval = float(app.config["WEBHOOK_DISPATCH_INTERVAL"])
        self.retention = retention.max_age_from_config(app.config)
        app.extensions["herald_webhooks"] = self

    @property
    def attempt_deadline(self) -> float:
        """The longest one attempt may take, from the name lookup to the status line."""
        return 2 * self.timeout

    @property
    def claim_window(self) -> timedelta:
        """How long a claimed attempt keeps its delivery from being claimed again (past
        its deadline: an attempt still running is never sent again beside it)."""
        return timedelta(seconds=self.attempt_deadline + 10)

    def start(self) -> None:
        """Start the dispatcher's loop (once per process)."""
        with self._lock:
            if self._started or self._app is None:
                return
            self._started = True
        socketio.start_background_task(self._loop)

    def _loop(self) -> None:
        assert self._app is not None
        while True:
            busy = False
            with self._app.app_context():
                try:
                    busy = self.ingest() >= BATCH
                    self.send_due()
                except Exception:
                    log.exception("webhook dispatch failed (next try in %.1f s)", self.interval)
                finally:
                    db.session.remove()
            socketio.sleep(0 if busy else self.interval)

    def trim(self, *, now: datetime | None = None) -> int:
        """Delete finished deliveries past ``WEBHOOK_DELIVERY_RETENTION_DAYS`` (a bounded
        amount); called by the runner's heartbeat with the history trim."""
        return retention.trim(db.engine, self.retention, now=now or utcnow())

    # -- ingest: job events -> deliveries ---------------------------------------------

    def ingest(self, *, now: datetime | None = None) -> int:
        """Turn the job events past the cursor into deliveries; returns how many events the
        cursor moved past (a full batch: more may be waiting; fewer: a hole holds it)."""
        now = now or utcnow()
        with db.engine.connect() as conn:
            cursor = conn.scalar(select(_cursor.c.last_event_id).where(_cursor.c.name == CURSOR))
            if cursor is None:
                # First start: deliveries begin with the events that come from now on.
                head = conn.scalar(select(func.max(_events.c.id))) or 0
                conn.rollback()
                self._insert_ignoring_conflicts(_cursor, [{"name": CURSOR, "last_event_id": head}])
                return 0
            # The newest id and whether any webhook exists, read together: an event at or
            # below it was handed in before any webhook created later, so none would get it.
            head, hooked = conn.execute(select(func.max(_events.c.id), select(_hooks.c.id).exists())).one()
            head = head or 0
            if not hooked:
                # Nobody to deliver to (the usual case): past every event at once, without
                # reading them (a busy server writes hundreds a second).
                conn.rollback()
                if head > cursor:
                    self._move_cursor(head)
                return 0
            rows = conn.execute(
                select(_events.c.id, _events.c.job_id, _events.c.seq, _events.c.type, _events.c.created_at)
                .where(_events.c.id > cursor)
                .order_by(_events.c.id)
                .limit(BATCH)
            ).all()
            statuses = [row for row in rows if row.type == "job_status"]
            deliveries = self._deliveries_for(conn, statuses) if statuses else []
            conn.rollback()
        if deliveries:
            self._insert_deliveries(deliveries)
        position, passed = cursor, 0
        for row in rows:
            if row.id != position + 1 and row.created_at > now - GAP_GRACE:
                break  # an id below it may still commit: read from here again next time
            position, passed = row.id, passed + 1
        if position > cursor:
            self._move_cursor(position)
        return passed

    @staticmethod
    def _move_cursor(position: int) -> None:
        with write_transaction() as write:
            write.execute(
                update(_cursor)
                .where(_cursor.c.name == CURSOR, _cursor.c.last_event_id < position)
                .values(last_event_id=position)
            )

    def _deliveries_for(self, conn: Any, statuses: list[Any]) -> list[dict[str, Any]]:
        """Delivery rows for ``job_status`` events: one per matching webhook and event name."""
        data = dict(
            conn.execute(select(_events.c.id, _events.c.data).where(_events.c.id.in_([r.id for r in statuses]))).all()
        )
        jobs = {
            row.id: row
            for row in conn.execute(
                select(_jobs.c.id, _jobs.c.owner_id, _jobs.c.kind, _jobs.c.parent_id).where(
                    _jobs.c.id.in_({r.job_id for r in statuses})
                )
            )
        }
        hooks: dict[int, list[Any]] = {}
        owners = {job.owner_id for job in jobs.values()}
        for hook in conn.execute(
            select(_hooks.c.id, _hooks.c.owner_id, _hooks.c.events, _hooks.c.created_at).where(
                _hooks.c.owner_id.in_(owners)
            )
        ):
            hooks.setdefault(hook.owner_id, []).append(hook)
        now = utcnow()
        rows: list[dict[str, Any]] = []
        next_yield = YIELD_EVERY
        for event in statuses:
            if len(rows) >= next_yield:  # a full batch for many webhooks is a second of CPU
                next_yield = len(rows) + YIELD_EVERY
                socketio.sleep(0)
            job = jobs.get(event.job_id)
            payload = data.get(event.id) or {}
            status = payload.get("status")
            if job is None or not status:
                continue
            for hook in hooks.get(job.owner_id, []):
                if event.created_at < hook.created_at:
                    continue  # the webhook did not exist yet
                for name in event_names(status, list(hook.events or [])):
                    body = {
                        "event": name,
                        "timestamp": isoformat(event.created_at),
                        "job": {
                            "id": job.id,
                            "kind": job.kind,
                            "status": status,
                            "seq": event.seq,
                            "parent_id": job.parent_id,
                            **{key: payload[key] for key in ("result", "error", "message") if key in payload},
                        },
                    }
                    rows.append(
                        {
                            "webhook_id": hook.id,
                            "event": name,
                            "job_id": job.id,
                            "job_event_id": event.id,
                            "body": json.dumps(body, separators=(",", ":"), sort_keys=True),
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": now,
                            "created_at": now,
                        }
                    )
        return rows

    def _insert_deliveries(self, rows: list[dict[str, Any]]) -> None:
        """Insert delivery rows a chunk per transaction, yielding between chunks (SQLite's
        writes do not yield); a chunk inserted twice adds nothing (see ``ingest``)."""
        for start in range(0, len(rows), YIELD_EVERY):
            if start:
                socketio.sleep(0)
            self._insert_chunk(rows[start : start + YIELD_EVERY])

    def _insert_chunk(self, rows: list[dict[str, Any]]) -> None:
        """Insert delivery rows; those of a webhook deleted since it was read are dropped
        (its foreign key refuses them), so a deletion costs the other webhooks no pass."""
        try:
            self._insert_ignoring_conflicts(_deliveries, rows)
        except IntegrityError:
            with db.engine.connect() as conn:
                ids = {row["webhook_id"] for row in rows}
                existing = set(conn.scalars(select(_hooks.c.id).where(_hooks.c.id.in_(ids))))
                conn.rollback()
            kept = [row for row in rows if row["webhook_id"] in existing]
            log.info("webhooks deleted while their deliveries were added: %d row(s) dropped", len(rows) - len(kept))
            if kept:
                self._insert_ignoring_conflicts(_deliveries, kept)

    def _insert_ignoring_conflicts(self, table: Any, rows: list[dict[str, Any]]) -> None:
        dialect = db.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:  # pragma: no cover - Herald runs on SQLite or PostgreSQL
            with write_transaction() as write:
                write.execute(insert(table), rows)
            return
        with write_transaction() as write:
            write.execute(dialect_insert(table).on_conflict_do_nothing(), rows)

    # -- send: due deliveries -> attempts ---------------------------------------------

    def claim(self, limit: int, *, now: datetime | None = None) -> list[tuple[int, int]]:
        """Take up to ``limit`` due deliveries for one attempt each: ``[(id, attempt)]``."""
        now = now or utcnow()
        due = (
            select(_deliveries.c.id)
            .where(_deliveries.c.status == "pending", _deliveries.c.next_attempt_at <= now)
            .order_by(_deliveries.c.next_attempt_at, _deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with write_transaction() as write:
            claimed = write.execute(
                update(_deliveries)
                .where(
                    _deliveries.c.id.in_(due.scalar_subquery()),
                    _deliveries.c.status == "pending",
                    _deliveries.c.next_attempt_at <= now,
                )
                .values(
                    attempts=_deliveries.c.attempts + 1, next_attempt_at=now + self.claim_window, last_attempt_at=now
                )
                .returning(_deliveries.c.id, _deliveries.c.attempts)
            ).all()
        return [(row.id, row.attempts) for row in claimed]

    def send_due(self, *, wait: bool = False) -> int:
        """Claim what this process has room for and send each in its own task (``wait``:
        here, one after the other); returns how many were claimed."""
        with self._lock:
            room = MAX_IN_FLIGHT - self._in_flight
        if room <= 0:
            return 0
        claimed = self.claim(room)
        for delivery_id, attempt in claimed:
            if wait:
                self.attempt(delivery_id, attempt)
                continue
            with self._lock:
                self._in_flight += 1
            socketio.start_background_task(self._attempt_in_context, delivery_id, attempt)
        return len(claimed)

    def _attempt_in_context(self, delivery_id: int, attempt: int) -> None:
        assert self._app is not None
        try:
            with self._app.app_context():
                try:
                    self.attempt(delivery_id, attempt)
                finally:
                    db.session.remove()
        except Exception:
            log.exception("webhook delivery %s: attempt %s could not be recorded", delivery_id, attempt)
        finally:
            with self._lock:
                self._in_flight -= 1

    def attempt(self, delivery_id: int, attempt: int) -> str | None:
        """POST one claimed delivery and record the outcome; returns its new status."""
        with db.engine.connect() as conn:
            row = conn.execute(
                select(_deliveries.c.body, _deliveries.c.event, _deliveries.c.created_at, _hooks.c.url, _hooks.c.secret)
                .join(_hooks, _hooks.c.id == _deliveries.c.webhook_id)
                .where(_deliveries.c.id == delivery_id)
            ).first()
            conn.rollback()
        if row is None:
            return None  # the webhook was deleted meanwhile
        body = row.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Herald-Webhooks/1",
            EVENT_HEADER: row.event,
            DELIVERY_HEADER: str(delivery_id),
            SIGNATURE_HEADER: signature_header(row.secret, int(time.time()), body),
        }
        code: int | None = None
        error: str | None = None
        try:
            # The whole attempt, name lookup included, is bounded: a receiver answering a
            # byte at a time would keep each read under the timeout and its slot forever.
            with deadline(self.attempt_deadline):
                check_resolved(row.url, self.allowed)
                with requests.Session() as session:
                    session.trust_env = False  # no proxy from the environment: the allowlist is the route
                    with session.post(
                        row.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False, stream=True
                    ) as response:
                        code = response.status_code
        except HostRefused as exc:
            error = exc.message
        except requests.Timeout:
            error = f"no answer within {self.timeout:g} s"
        except DeadlineExceeded:
            error = f"no complete answer within {self.attempt_deadline:g} s"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        if code is not None and not 200 <= code < 300:
            error = f"HTTP {code}"
        return self._record(delivery_id, attempt, row.created_at, code, error)

    def _record(self, delivery_id: int, attempt: int, created_at: datetime, code: int | None, error: str | None) -> str:
        now = utcnow()
        values: dict[str, Any] = {"last_status_code": code, "last_error": error[:MAX_ERROR] if error else None}
        if error is None:
            values.update(status="delivered", next_attempt_at=None)
        else:
            delay = backoff(attempt, self.retry_base)
            if (now - created_at).total_seconds() + delay > self.retry_for:
                values.update(status="failed", next_attempt_at=None)
            else:
                values.update(status="pending", next_attempt_at=now + timedelta(seconds=delay))
        with write_transaction() as write:
            write.execute(
                update(_deliveries)
                .where(_deliveries.c.id == delivery_id, _deliveries.c.attempts == attempt)
                .values(**values)
            )
        result = values["status"] if values["status"] != "pending" else "retry"
        WEBHOOK_DELIVERIES.labels(result).inc()
        if error is not None:
            log.info("webhook delivery %s attempt %s: %s (%s)", delivery_id, attempt, error, values["status"])
        return str(values["status"])


#: The process's dispatcher.
dispatcher = Dispatcher()
