"""Who is connected to this process: Socket.IO sessions and plain WebSockets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..models.base import utcnow
from .delivery import plain_rooms


@dataclass
class ConnectionInfo:
    """One authenticated Socket.IO connection."""

    sid: str
    user_id: int
    username: str
    client_id: str
    #: The ``jti`` of the token it authenticated with, so logout can close it.
    token_jti: str | None = None
    connected_at: Any = field(default_factory=utcnow)


_lock = threading.Lock()
_sessions: dict[str, ConnectionInfo] = {}
#: Plain WebSocket connections open in this process (their handlers add and remove).
plain_connections: set[Any] = set()


def register(info: ConnectionInfo) -> None:
    """Remember an authenticated Socket.IO connection."""
    with _lock:
        _sessions[info.sid] = info


def unregister(sid: str) -> ConnectionInfo | None:
    """Forget a Socket.IO connection."""
    with _lock:
        return _sessions.pop(sid, None)


def lookup(sid: str) -> ConnectionInfo | None:
    """The connection's identity, if authenticated."""
    return _sessions.get(sid)


def connection_counts() -> dict[str, int]:
    """Open connections of this process, by protocol."""
    return {
        "socketio": len(_sessions),
        "websocket": len(plain_connections),
        "websocket_subscribed": plain_rooms.count(),
    }


#: Other transports (plain WebSocket) register here to close their own sockets on logout.
_revocation_listeners: list[Callable[[str], int]] = []


def on_token_revoked(listener: Callable[[str], int]) -> None:
    """Call ``listener(jti) -> closed count`` whenever a token is revoked in this process."""
    if listener not in _revocation_listeners:
        _revocation_listeners.append(listener)


def disconnect_token(jti: str) -> int:
    """Close this process's connections that authenticated with token ``jti``."""
    from ..extensions import socketio
    from .messages import error_message

    with _lock:
        sids = [info.sid for info in _sessions.values() if info.token_jti == jti]
    for sid in sids:
        message = error_message("token_revoked", "the token was revoked; sign in again")
        socketio.server.emit("error", message, to=sid, namespace="/", ignore_queue=True)
        socketio.server.disconnect(sid, namespace="/", ignore_queue=True)
    return len(sids) + sum(listener(jti) for listener in _revocation_listeners)
