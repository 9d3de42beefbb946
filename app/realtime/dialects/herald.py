"""``/ws``: Herald's own messages over a bare WebSocket, plus seed 000's batch commands.

Client frames are JSON objects with a ``type``; server frames are the same
``{type, job_id, seq, timestamp, data}`` messages Socket.IO clients get.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...inputs import parse_id
from ...models import isoformat, utcnow
from ..delivery import plain_rooms
from ..messages import make_message
from ..rooms import job_room
from ..subscriptions import Subscribed, unsubscribe_job
from . import Dialect, subscribe_plain
from .batch import ws_subscribe_batch, ws_unsubscribe_batch

if TYPE_CHECKING:
    from ..ws import PlainSocket


class HeraldDialect(Dialect):
    """Commands: ``ping``, ``echo``, ``subscribe``, ``unsubscribe``, ``subscribe_batch``, ``unsubscribe_batch``."""

    name = "herald"

    on_subscribe_batch = staticmethod(ws_subscribe_batch)
    on_unsubscribe_batch = staticmethod(ws_unsubscribe_batch)

    @staticmethod
    def on_ping(conn: PlainSocket, message: dict[str, Any]) -> None:
        """``{"type": "ping"}`` → ``pong`` ``{echo, server_time}``."""
        conn.send(make_message("pong", {"echo": message.get("data"), "server_time": isoformat(utcnow())}))

    @staticmethod
    def on_echo(conn: PlainSocket, message: dict[str, Any]) -> None:
        """``{"type": "echo", ...}`` → ``echo`` with the other keys as ``data``."""
        conn.send(make_message("echo", {key: value for key, value in message.items() if key != "type"}))

    @staticmethod
    def on_subscribe(conn: PlainSocket, message: dict[str, Any]) -> None:
        """``subscribe {job_id, last_seq?}`` → ``subscribed {job}``, then replay and live."""
        job_id = parse_id(message["job_id"], "job_id")
        subscribe_plain(
            conn,
            job_id,
            message.get("last_seq"),
            lambda subscribed: [make_message("subscribed", _subscribed_data(subscribed), job_id=job_id)],
        )

    @staticmethod
    def on_unsubscribe(conn: PlainSocket, message: dict[str, Any]) -> None:
        """``unsubscribe {job_id}`` → ``unsubscribed``."""
        job_id = parse_id(message["job_id"], "job_id")
        unsubscribe_job(conn, job_id, leave=lambda: plain_rooms.leave(conn, job_room(job_id)))
        conn.send(make_message("unsubscribed", {}, job_id=job_id))


def _subscribed_data(subscribed: Subscribed) -> dict[str, Any]:
    """``{job}``, plus ``resumed`` (``complete`` or ``resync``) when a ``last_seq`` was given."""
    if subscribed.resume is None:
        return {"job": subscribed.snapshot}
    return {"job": subscribed.snapshot, "resumed": subscribed.resume.value}
