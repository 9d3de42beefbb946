"""Seed 000: ``batch_execution_update`` for watchers of a batch execution (a Herald job).

``subscribe_batch {batch_execution_id}`` — on plain ``/ws`` and on Socket.IO — checks
ownership, joins ``batch_room(id)`` and answers with the current state at once. After
that a pipeline adapter derives one update from every ``job_status`` and ``job_counts``
event of the job::

    {"type": "batch_execution_update", "batch_execution_id": 123,
     "data": {"status": "running", "success_count": 5, "failed_count": 1, "running_count": 2,
              "pending_count": 0, "total_count": 8, "updated_at": "2024-01-01T12:00:00.000Z"},
     "timestamp": "2024-01-01T12:00:00.000Z"}
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from flask import request
from flask_socketio import join_room, leave_room

from ...errors import HeraldError, NotFound
from ...inputs import parse_id
from ...jobs.service import get_owned_job, job_snapshot
from ...models import FINAL_STATUSES, JobStatus, isoformat, utcnow
from .. import connections
from ..delivery import plain_rooms
from ..events import emit_reply, payload_of, register_handler
from ..messages import Message, error_message
from ..pipeline import pipeline
from ..rooms import batch_room
from . import Payload

if TYPE_CHECKING:
    from ..ws import PlainSocket

UPDATE = "batch_execution_update"
COUNT_KEYS = ("success_count", "failed_count", "running_count", "pending_count", "total_count")


def batch_update(job_id: int, status: str, counts: dict[str, Any] | None, moment: str | None) -> Payload:
    """The seed-000 message for a job's status and counts (missing counts are 0)."""
    counts = counts or {}
    data: dict[str, Any] = {"status": status}
    for key in COUNT_KEYS:
        value = counts.get(key, 0)
        data[key] = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
    stamp = moment or isoformat(utcnow())
    data["updated_at"] = stamp
    return {"type": UPDATE, "batch_execution_id": job_id, "data": data, "timestamp": stamp}


class _BatchStates:
    """Last status and counts of the jobs this process publishes for, from their messages.

    A job first seen mid-life (swept or cancelled by this process) is rendered from what
    the message itself says: counts come from ``job_counts`` events and from a final status
    (which carries the job's counts as they ended); otherwise they are unknown (sent as 0).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[int, dict[str, Any]] = {}

    def update(self, message: Message) -> tuple[str, dict[str, Any] | None]:
        job_id: int = message["job_id"]
        data = message["data"]
        with self._lock:
            state = self._states.get(job_id)
        if state is None:
            first = JobStatus.PENDING.value if message["type"] == "job_status" else JobStatus.RUNNING.value
            state = {"status": first, "counts": None}
        if message["type"] == "job_status":
            state["status"] = data.get("status", state["status"])
            if isinstance(data.get("counts"), dict):  # a final status carries the row's counts
                state["counts"] = dict(data["counts"])
            elif state["counts"] is None:
                state["counts"] = _result_counts(data.get("result"))
        else:
            state["counts"] = dict(data)
        with self._lock:
            if JobStatus(state["status"]) in FINAL_STATUSES:
                self._states.pop(job_id, None)
            else:
                self._states[job_id] = state
        return state["status"], state["counts"]


def _result_counts(result: Any) -> dict[str, Any] | None:
    """The counters a final result reports, if it reports any."""
    if not isinstance(result, dict):
        return None
    counts = {key: result[key] for key in COUNT_KEYS if key in result}
    return counts or None


_states = _BatchStates()


def batch_adapter(message: Message, owner_id: int) -> list[tuple[list[str], str, Payload]]:
    """Pipeline adapter: a ``batch_execution_update`` per status or counts event."""
    if message["type"] not in ("job_status", "job_counts") or message.get("job_id") is None:
        return []
    status, counts = _states.update(message)
    job_id = message["job_id"]
    return [([batch_room(job_id)], UPDATE, batch_update(job_id, status, counts, message["timestamp"]))]


def current_update(user_id: int, job_id: int) -> Payload:
    """The update for a job's current row (raises ``NotFound`` when it is not the user's)."""
    snapshot = job_snapshot(get_owned_job(user_id, job_id))
    moment = snapshot["finished_at"] or snapshot["started_at"] or snapshot["created_at"]
    return batch_update(job_id, snapshot["status"], snapshot["counts"], moment)


# -- plain WebSocket (used by the /ws dialect) ----------------------------------------


def ws_subscribe_batch(conn: PlainSocket, message: dict[str, Any]) -> None:
    """``subscribe_batch``: join the batch room, then the current state right away."""
    job_id = parse_id(message["batch_execution_id"], "batch_execution_id")
    get_owned_job(conn.user_id, job_id)
    plain_rooms.join(conn, batch_room(job_id))
    conn.send(current_update(conn.user_id, job_id))


def ws_unsubscribe_batch(conn: PlainSocket, message: dict[str, Any]) -> None:
    """``unsubscribe_batch``: leave the batch room (silently, as in the document)."""
    job_id = parse_id(message["batch_execution_id"], "batch_execution_id")
    plain_rooms.leave(conn, batch_room(job_id))


# -- Socket.IO -----------------------------------------------------------------------


def _user_id() -> int:
    return connections.current().user_id


def on_subscribe_batch(*args: Any) -> dict[str, Any]:
    """Client → ``subscribe_batch {batch_execution_id}``; server → ``batch_execution_update``.

    Ack ``{ok: true}`` and the current state at once; a job that is not yours is
    ``not_found`` in the ack only.
    """
    try:
        user_id = _user_id()
        job_id = parse_id(payload_of("subscribe_batch", args)["batch_execution_id"], "batch_execution_id")
        update = current_update(user_id, job_id)
    except NotFound as exc:
        return {"ok": False, "error": {"code": exc.code, "message": exc.message}}
    except HeraldError as exc:
        emit_reply(error_message(exc.code, exc.message))
        return {"ok": False, "error": {"code": exc.code, "message": exc.message}}
    join_room(batch_room(job_id))
    emit_reply(update)
    return {"ok": True, "batch_execution_id": job_id}


def on_unsubscribe_batch(*args: Any) -> dict[str, Any]:
    """Client → ``unsubscribe_batch {batch_execution_id}``; ack ``{ok: true}``."""
    try:
        _user_id()
        job_id = parse_id(payload_of("unsubscribe_batch", args)["batch_execution_id"], "batch_execution_id")
    except HeraldError as exc:
        emit_reply(error_message(exc.code, exc.message))
        return {"ok": False, "error": {"code": exc.code, "message": exc.message}}
    leave_room(batch_room(job_id), sid=request.sid)  # type: ignore[attr-defined]
    return {"ok": True, "batch_execution_id": job_id}


register_handler("subscribe_batch", on_subscribe_batch)
register_handler("unsubscribe_batch", on_unsubscribe_batch)


def init_batch() -> None:
    """Derive seed-000 updates from the pipeline (idempotent)."""
    pipeline.add_adapter(batch_adapter)
