"""Seed dialects: what a plain-WebSocket endpoint says, on top of one connection class.

A dialect turns client frames into actions (``handle``) and pipeline messages into the
wire shapes a source document promised (``render``). It never writes job state and knows
no job kinds; ``render`` reads the message alone (what it needs is in the event's data), and
whatever a subscription reads goes through ``jobs.service`` (``tests/test_layering.py``).
The transport (``app/realtime/ws.py``) owns auth, queues and closing.

* :mod:`.herald` — ``/ws``: Herald's own messages plus seed 000's batch subscriptions.
* :mod:`.batch` — seed 000 ``batch_execution_update`` (also served over Socket.IO).
* :mod:`.client` — seed 002 ``/ws/<client_id>``.
* :mod:`.executions` — seed 004 ``/api/v1/ws/executions/<id>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import ValidationFailed
from ..commands import PLAIN_COMMANDS, Schema, check
from ..delivery import plain_rooms
from ..limits import check_subscription_room
from ..messages import Message, error_message
from ..rooms import job_room
from ..subscriptions import Subscribed, subscribe_job

if TYPE_CHECKING:
    from ..ws import PlainSocket

Payload = dict[str, Any]


@dataclass(frozen=True)
class Close:
    """Returned by ``render`` to close the socket after the payloads before it."""

    code: int
    reason: str


class Dialect:
    """Base dialect: Herald's error shape, pass-through rendering, no commands."""

    #: Shown in logs and ``/health``; also names its commands in ``commands.PLAIN_COMMANDS``.
    name = "herald"

    def open(self, conn: PlainSocket) -> None:
        """Called once the connection is authenticated (join rooms, greet)."""

    def handle(self, conn: PlainSocket, message: dict[str, Any]) -> None:
        """One parsed client object (never the ``auth`` message): checked against its
        command's schema, then given to ``on_<type>``; a type with no schema goes to ``unknown``."""
        schema: Schema | None = PLAIN_COMMANDS[self.name].get(message["type"])
        if schema is None:
            self.unknown(conn, message)
            return
        getattr(self, f"on_{message['type']}")(conn, check(schema, message, message["type"]))

    def unknown(self, conn: PlainSocket, message: dict[str, Any]) -> None:
        """A type this dialect has no command for."""
        raise ValidationFailed(f"unknown message type {message.get('type')!r}", code="unknown_type")

    def wants(self, message: Message) -> bool:
        """Cheap filter at fan-out time (before queueing): False drops the message."""
        return True

    def render(self, conn: PlainSocket, message: Message) -> list[Payload | Close]:
        """Wire payloads for one pipeline message delivered to this connection."""
        return [message]

    def error(self, code: str, message: str) -> Payload:
        """The error frame of this dialect."""
        return error_message(code, message)


def subscribe_plain(
    conn: PlainSocket,
    job_id: int,
    last_seq: int | None,
    first: Callable[[Subscribed], list[Payload]],
) -> Subscribed:
    """Subscribe ``conn`` to a job; ``first(subscribed)`` goes out before replay and live.

    Replayed and held-back messages are collected while ``subscribe_job`` runs and queued
    in one step after the acknowledgement, so the order is ack, replay, live.
    """
    check_subscription_room(conn, job_id)
    collected: list[Message] = []
    firsts: list[Payload] = []
    subscribed = subscribe_job(
        conn,
        conn.user_id,
        job_id,
        last_seq,
        join=lambda: plain_rooms.join(conn, job_room(job_id)),
        send=collected.append,
        # Built while live events are held: ``first`` may read (and yield) without a live
        # event getting ahead of it.
        on_subscribed=lambda subscribed: firsts.extend(first(subscribed)),
    )
    conn.send_batch(firsts, collected)
    return subscribed
