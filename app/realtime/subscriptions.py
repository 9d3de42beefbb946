"""Subscribing a connection to a job: authorize, join, replay, go live — for every protocol.

The ledger holds live messages of the job back while the replay reads the database, then
releases only those the replay did not cover: no gap, no duplicate, in seq order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask

from ..extensions import db, socketio
from ..jobs.service import get_owned_job, job_events, job_snapshot
from ..metrics import RESUMED_COMPLETE
from .delivery import ledger
from .messages import Message, make_message

log = logging.getLogger(__name__)

#: Events replayed per database read (the connection yields between pages).
REPLAY_PAGE = 500


def subscribe_job(
    conn: Any,
    user_id: int,
    job_id: int,
    last_seq: int | None,
    *,
    join: Callable[[], None],
    send: Callable[[Message], None],
    on_snapshot: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Subscribe ``conn`` to a job it owns; returns the snapshot (raises ``NotFound``).

    With ``last_seq`` every durable event after it is sent first, then the latest progress;
    without it only events after the snapshot follow. ``on_snapshot(snapshot)`` runs while
    live events are still held back: what it prepares (and may read for) goes out first.
    """
    job = get_owned_job(user_id, job_id)
    ledger.begin_replay(conn, job_id)
    try:
        join()
        db.session.refresh(job)
        snapshot = job_snapshot(job)
        replayed = job.last_seq
        if last_seq is not None:
            after = max(0, last_seq)
            sent_max = 0
            while after < job.last_seq:
                page = job_events(job_id, after=after, limit=REPLAY_PAGE)
                if not page:
                    break
                for event in page:
                    send(event.to_message())
                after = sent_max = page[-1].seq
                socketio.sleep(0)
            replayed = max(replayed, sent_max)
            if snapshot.get("progress"):
                progress = dict(snapshot["progress"])
                type_ = progress.pop("type", "job_progress")
                send(make_message(type_, progress, job_id=job_id))
        if on_snapshot is not None:
            on_snapshot(snapshot)
    except BaseException:
        ledger.forget(conn, job_id)
        raise
    finally:
        db.session.rollback()
    for message in ledger.finish_replay(conn, job_id, replayed):
        send(message)
    if last_seq is not None:
        RESUMED_COMPLETE.inc()  # the journal keeps every event: a replay always covers the gap
    return snapshot


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
                while True:
                    page = job_events(job_id, after=replayed, limit=REPLAY_PAGE)
                    if not page:
                        break
                    for event in page:
                        send(event.to_message())
                    replayed = page[-1].seq
                    socketio.sleep(0)
            except Exception:
                log.exception("catching up job %s after a queue outage failed", job_id)
            finally:
                db.session.rollback()
                for message in ledger.finish_replay(conn, job_id, replayed):
                    send(message)


def _sender(conn: Any) -> Callable[[Message], None]:
    """How to send one message straight to a connection of either transport."""
    if isinstance(conn, str):  # a Socket.IO sid

        def send(message: Message) -> None:
            socketio.server.emit(message["type"], message, to=conn, namespace="/", ignore_queue=True)

        return send
    return lambda message: conn.send_batch((), [message])
