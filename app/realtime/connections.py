"""Who is connected to this process: Socket.IO sessions and plain WebSockets."""

from __future__ import annotations

import threading
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
