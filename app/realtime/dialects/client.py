"""Seed 002: ``/ws/<client_id>`` — one browser tab or script of one user.

On connect: ``{"type": "connection", "message", "client_id", "timestamp"}``. Then
``ping`` → ``pong``; ``subscribe {event}`` → ``subscription``; any other type is echoed
back as ``echo`` (the document's behaviour). The user's own ``batch_report_progress``,
``data_import_progress`` and ``file_upload_progress`` arrive here — from the client room
(uploads started with this client id), the user room and the user's jobs. Every message
has a ``timestamp``; ``batch_report_progress`` also carries top-level ``progress`` and
``total``, which the document's client reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...inputs import CLIENT_ID_RULE, is_client_id
from ...models import isoformat, utcnow
from ..delivery import plain_rooms
from ..messages import Message
from ..rooms import client_room, user_jobs_room, user_room
from . import Close, Dialect, Payload

if TYPE_CHECKING:
    from ..ws import PlainSocket

#: Progress types the document's clients listen for.
PROGRESS_TYPES = frozenset({"batch_report_progress", "data_import_progress", "file_upload_progress"})


def _now() -> str | None:
    return isoformat(utcnow())


class ClientDialect(Dialect):
    """Seed 002's messages for one ``client_id`` of the authenticated user."""

    name = "client"

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        #: Event names the client asked for with ``subscribe`` (acknowledged, informative).
        self.events: set[str] = set()

    def open(self, conn: PlainSocket) -> None:
        if not is_client_id(self.client_id):
            conn.send(self.error("invalid_client_id", f"client_id must match {CLIENT_ID_RULE}"))
            conn.close(1008, "invalid client_id")
            return
        for room in (client_room(conn.user_id, self.client_id), user_room(conn.user_id), user_jobs_room(conn.user_id)):
            plain_rooms.join(conn, room)
        conn.send(
            {
                "type": "connection",
                "message": f"WebSocket connected, client id: {self.client_id}",
                "client_id": self.client_id,
                "user": conn.username,
                "timestamp": _now(),
            }
        )

    def on_ping(self, conn: PlainSocket, message: dict[str, Any]) -> None:
        conn.send({"type": "pong", "timestamp": _now()})

    def on_subscribe(self, conn: PlainSocket, message: dict[str, Any]) -> None:
        event = message["event"]
        self.events.add(event)
        conn.send(
            {"type": "subscription", "event": event, "message": f"subscribed to {event} events", "timestamp": _now()}
        )

    def unknown(self, conn: PlainSocket, message: dict[str, Any]) -> None:
        """Any other type is echoed back (the document's behaviour)."""
        conn.send({"type": "echo", "data": message, "timestamp": _now()})

    def wants(self, message: Message) -> bool:
        """Only the three progress types (of any room) and user-level notices pass."""
        kind = message.get("type")
        return kind in PROGRESS_TYPES or (message.get("job_id") is None and kind != "error")

    def render(self, conn: PlainSocket, message: Message) -> list[Payload | Close]:
        """Seed 002's shape: the message, plus ``progress``/``total`` for batch reports."""
        kind = message.get("type")
        if kind in PROGRESS_TYPES:
            payload = dict(message)
            if kind == "batch_report_progress":
                data = message.get("data") or {}
                payload["progress"] = data.get("current")
                payload["total"] = data.get("total")
            return [payload]
        return [message] if self.wants(message) else []  # a user-level notice (client or user room)

    def error(self, code: str, message: str) -> Payload:
        return {"type": "error", "code": code, "message": message, "timestamp": _now()}
