"""Subscribing a connection to a job: authorize, join, replay, go live — for every protocol.

The ledger holds live messages of the job back while the replay reads the database, then
releases only those the replay did not cover: no gap, no duplicate, in seq order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import Flask

from ..errors import NotFound
from ..extensions import db, socketio
from ..jobs.service import check_job_owner, job_event_messages, job_snapshot, read_job_row
from ..metrics import RESUMED_COMPLETE, RESUMED_RESYNC
from .delivery import ledger, send_to_sid
from .messages import Message, make_message

log = logging.getLogger(__name__)

#: Events replayed per database read (the connection yields between pages).
REPLAY_PAGE = 500


class Resume(StrEnum):
    """How a subscription with ``last_seq`` was resumed (the ack says which)."""

    #: Every durable event after ``last_seq`` was replayed, in order.
    COMPLETE = "complete"
    #: The position could not be served (history trimmed, or ahead of the job's head): a
    #: ``resync`` message carried the current snapshot and head seq instead of a replay.
    RESYNC = "resync"


@dataclass(frozen=True)
class Subscribed:
    """What a subscription started from: the job's snapshot and, with ``last_seq``, the resume."""

    snapshot: dict[str, Any]
    resume: Resume | None = None


def subscribe_job(
    conn: Any,
    user_id: int,
    job_id: int,
    last_seq: int | None,
    *,
    join: Callable[[], None],
    send: Callable[[Message], None],
    on_subscribed: Callable[[Subscribed], None] | None = None,
) -> Subscribed:
    """Subscribe ``conn`` to a job it owns (raises ``NotFound`` otherwise).

    With ``last_seq`` every durable event after it is sent first, then the latest progress
    — or, when the kept history no longer starts right after ``last_seq`` (trimmed) or
    ``last_seq`` is past the job's head, one ``resync`` message with the snapshot and the
    head seq: the client starts again from there, never from a silent gap. Without it only
    events after the snapshot follow. ``on_subscribed(subscribed)`` runs while live events
    are still held back: what it prepares (and may read for) goes out first.
    """
    check_job_owner(user_id, job_id)
    resume: Resume | None = None
    ledger.begin_replay(conn, job_id)
    try:
        join()
        job = read_job_row(job_id)  # read after joining: nothing slips by
        if job is None:
            raise NotFound(f"job {job_id} not found")
        snapshot = job_snapshot(job)
        head = replayed = job.last_seq
        if last_seq is not None:
            resume, replayed = _replay(job_id, last_seq, head, send)
            if resume is Resume.RESYNC:
                send(_resync_message(snapshot, head, last_seq))
            elif snapshot.get("progress"):
                progress = dict(snapshot["progress"])
                type_ = progress.pop("type", "job_progress")
                send(make_message(type_, progress, job_id=job_id))
        subscribed = Subscribed(snapshot, resume)
        if on_subscribed is not None:
            on_subscribed(subscribed)
    except BaseException:
        ledger.forget(conn, job_id)
        raise
    finally:
        db.session.rollback()
    for message in ledger.finish_replay(conn, job_id, replayed):
        send(message)
    if resume is not None:
        (RESUMED_COMPLETE if resume is Resume.COMPLETE else RESUMED_RESYNC).inc()
    return subscribed


def _replay(job_id: int, last_seq: int, head: int, send: Callable[[Message], None]) -> tuple[Resume, int]:
    """Send the stored events after ``last_seq`` up to at least ``head``; returns the
    outcome and the last seq sent (events committed since the snapshot may come along)."""
    if last_seq > head:
        return Resume.RESYNC, head
    after = last_seq
    while after < head:
        page = job_event_messages(job_id, after=after, limit=REPLAY_PAGE)
        if not page or page[0]["seq"] != after + 1:
            # Trimmed below the position: start again from the snapshot. Events past ``head``
            # sent meanwhile come again live (the ledger releases everything after ``head``).
            return Resume.RESYNC, head
        for message in page:
            send(message)
        after = page[-1]["seq"]
        socketio.sleep(0)
    return Resume.COMPLETE, after


def unsubscribe_job(conn: Any, job_id: int, *, leave: Callable[[], None]) -> None:
    """Stop delivering a job to ``conn``."""
    leave()
    ledger.forget(conn, job_id)


def catch_up(app: Flask, held: list[tuple[Any, int, int]]) -> None:
    """Replay what held subscriptions missed (a message-queue outage), then release them.

    ``held`` comes from ``Ledger.hold_all()``: each ``(conn, job_id, last_seq)`` has been
    holding its live messages since before the queue was listened to again, so the
    database replay and the live stream meet without a gap or a duplicate.
    """
    with app.app_context():
        for conn, job_id, last_seq in held:
            send = _sender(conn)
            replayed = last_seq
            try:
                job = read_job_row(job_id)
                if job is not None:
                    resume, replayed = _replay(job_id, last_seq, job.last_seq, send)
                    if resume is Resume.RESYNC:  # trimmed during the outage: start again
                        send(_resync_message(job_snapshot(job), job.last_seq, last_seq))
                        RESUMED_RESYNC.inc()
            except Exception:
                log.exception("catching up job %s after a queue outage failed", job_id)
            finally:
                db.session.rollback()
                for message in ledger.finish_replay(conn, job_id, replayed):
                    send(message)


def _resync_message(snapshot: dict[str, Any], head: int, requested: int) -> Message:
    """``resync {job, last_seq, requested_seq}``: drop what you have, start from this snapshot."""
    return make_message(
        "resync", {"job": snapshot, "last_seq": head, "requested_seq": requested}, job_id=snapshot["id"]
    )


def _sender(conn: Any) -> Callable[[Message], None]:
    """How to send one message straight to a connection of either transport."""
    if isinstance(conn, str):  # a Socket.IO sid
        return lambda message: send_to_sid(conn, message)
    return lambda message: conn.send_batch((), [message])
