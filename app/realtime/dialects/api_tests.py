"""Seed 001 over Socket.IO: ``subscribe_test`` / ``unsubscribe_test`` and the ``test_*`` events.

Client → ``subscribe_test {test_id}`` (a Herald job id, usually an ``api_test`` job); the
ack is ``{ok: true, test_id, job}`` and the current state follows at once as
``test_status_update`` (plus ``test_completed`` / ``test_error`` when it has finished).
Live, :func:`seed001_adapter` derives from the job's own pipeline messages:

* ``test_progress`` ``{test_id, progress, current_step, total_steps, ...}`` — from
  ``api_test`` progress ticks and ``step_complete`` events (and a batch's ``job_counts``);
* ``test_status_update`` ``{test_id, status}`` — from every ``job_status``;
* ``test_completed`` ``{test_id, results, success}`` — when the job completes;
* ``test_error`` ``{test_id, error}`` — when the job fails or a step reports ``error``.

Each is ``{type, test_id, timestamp, data}`` and goes to ``test_room(test_id)`` only; it is
not a second pipeline, just another rendering of the same messages.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask_socketio import join_room, leave_room

from ...inputs import parse_id
from ...jobs.service import snapshot_after_join
from ...models.base import isoformat, utcnow
from .. import connections
from ..delivery import send_to_sid
from ..events import payload_of, register_handler, socket_handler
from ..messages import Message, is_progress
from ..pipeline import pipeline
from ..rooms import test_room

Emit = tuple[list[str], str, dict[str, Any]]


def seed001_message(type_: str, test_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """A seed-001 message: ``{type, test_id, timestamp, data}`` (no job_id: the ledger ignores it)."""
    return {"type": type_, "test_id": test_id, "timestamp": isoformat(utcnow()), "data": {"test_id": test_id, **data}}


def _status_messages(test_id: int, status: str, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = [("test_status_update", {"status": status, "message": data.get("message")})]
    if status == "completed":
        result = data.get("result")
        success = result.get("status", "passed") == "passed" if isinstance(result, dict) else True
        out.append(("test_completed", {"results": result, "success": success}))
    elif status == "failed":
        out.append(("test_error", {"error": data.get("error")}))
    return out


def seed001_adapter(message: Message, owner_id: int) -> list[Emit]:
    """Pipeline message → seed-001 emits for ``subscribe_test`` subscribers (cheap when unrelated)."""
    type_ = message.get("type")
    job_id = message.get("job_id")
    if job_id is None:
        return []
    data = message.get("data") or {}
    derived: list[tuple[str, dict[str, Any]]] = []
    if type_ == "job_status":
        derived = _status_messages(job_id, data.get("status", ""), data)
    elif type_ == "step_complete" and data.get("total_steps"):
        done, total = int(data.get("index", 0)) + 1, int(data["total_steps"])
        derived = [
            (
                "test_progress",
                {
                    "progress": round(100.0 * done / total, 1),
                    "current_step": done,
                    "total_steps": total,
                    "step": data.get("name"),
                    "step_status": data.get("status"),
                },
            )
        ]
    elif type_ == "job_counts" and data.get("total_count"):
        done, total = int(data.get("success_count", 0)) + int(data.get("failed_count", 0)), int(data["total_count"])
        derived = [("test_progress", {"progress": round(100.0 * done / total, 1), **data})]
    elif type_ == "progress" and is_progress(message):
        derived = [
            (
                "test_progress",
                {
                    "progress": data.get("percent"),
                    "current_step": data.get("current"),
                    "total_steps": data.get("total"),
                    "eta_seconds": data.get("eta"),  # seed 001's name for the tick's one ETA
                    "message": data.get("message"),
                },
            )
        ]
    elif type_ == "error" and message.get("seq") is not None:
        derived = [("test_error", {"error": data})]
    if not derived:  # (most messages: every other kind's ticks and events)
        return []
    rooms = [test_room(job_id)]
    return [(rooms, event, seed001_message(event, job_id, payload)) for event, payload in derived]


def _test_id(event: str, args: tuple[Any, ...]) -> int:
    return parse_id(payload_of(event, args)["test_id"], "test_id")


def _user_id() -> int:
    return connections.current().user_id


@socket_handler
def on_subscribe_test(*args: Any) -> dict[str, Any]:
    """Client → ``subscribe_test {test_id}``; ack ``{ok, test_id, job}``, then the current state.

    Another user's or an unknown id is an ``error`` ``not_found`` (same as missing).
    """
    user_id = _user_id()
    test_id = _test_id("subscribe_test", args)
    sid: str = request.sid  # type: ignore[attr-defined]
    snapshot = snapshot_after_join(user_id, test_id, lambda: join_room(test_room(test_id)))
    for event, payload in _status_messages(test_id, snapshot["status"], snapshot):
        send_to_sid(sid, seed001_message(event, test_id, payload))
    return {"ok": True, "test_id": test_id, "job": snapshot}


@socket_handler
def on_unsubscribe_test(*args: Any) -> dict[str, Any]:
    """Client → ``unsubscribe_test {test_id}``; ack ``{ok: true, test_id}``; nothing more arrives."""
    _user_id()
    test_id = _test_id("unsubscribe_test", args)
    leave_room(test_room(test_id))
    return {"ok": True, "test_id": test_id}


def init_app(app: Flask) -> None:
    """Register the seed-001 handlers and adapter (idempotent)."""
    register_handler("subscribe_test", on_subscribe_test)
    register_handler("unsubscribe_test", on_unsubscribe_test)
    pipeline.add_adapter(seed001_adapter)
