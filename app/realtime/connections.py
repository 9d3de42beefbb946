"""Who is connected to this process, and ending sessions whose token stopped being valid.

Socket.IO sessions (:class:`ConnectionInfo`) and plain WebSockets (``ws.PlainSocket``)
are both *sessions*: each knows the token it authenticated with (``token_jti``, and
``expires_at`` from its ``exp`` claim) and how to ``end`` itself with an error message.
A token is checked when the socket connects; afterwards revocation (:func:`revoke_token`)
and expiry (:class:`ExpiryWatch`) end every session that used it, so no socket outlives
its credentials. Handlers also refuse an expired session at once (:func:`current`).

Revocation reaches **every process**: the one that revoked ends its own sessions and
tells the others through the message queue (a notice on python-socketio's channel, see
:func:`~.delivery.broadcast_notice`); each ends its sessions of that token and drops it
from its token cache (:mod:`app.auth.cache`). Without a message queue there is one process
and nothing to tell. A session that registers while a revocation of its token is being
announced is caught by :func:`ended_if_revoked` right after it registered. A notice lost
with the message queue (Redis down at the moment of a logout) is made up for by
:func:`recheck_revocations`: every ``REVOCATION_RECHECK_INTERVAL`` the tokens of the
open sessions are looked up in the revoked-token table.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Flask, current_app, request
from sqlalchemy import select

from ..auth.cache import token_cache
from ..errors import BadRequest, Unauthorized
from ..extensions import db
from ..models.base import utcnow
from ..models.token import RevokedToken
from .delivery import broadcast_notice, notice_handlers, plain_rooms
from .messages import error_message

#: How late an expired session may be closed, at most (the watcher's longest sleep).
EXPIRY_CHECK_INTERVAL = 0.25
log = logging.getLogger(__name__)

#: How late, at most, a session whose token another process revoked is ended when the
#: notice of it was lost (the message queue was down): the revoked-token table is read.
REVOCATION_RECHECK_INTERVAL = 10.0
#: Token ids per lookup in the revoked-token table.
RECHECK_CHUNK = 500
#: The message-queue notice that tells every process a token was revoked.
TOKEN_REVOKED_NOTICE = "token_revoked"
TOKEN_REVOKED_MESSAGE = "the token was revoked; sign in again"


class Session(Protocol):
    """What both transports' connections offer for authentication bookkeeping."""

    token_jti: str | None
    expires_at: float | None

    def is_open(self) -> bool:
        """False once the connection is gone (the watch then forgets it)."""

    def end(self, code: str, message: str) -> None:
        """Send an ``error`` with ``code`` and close the connection."""


@dataclass(eq=False)
class ConnectionInfo:
    """One authenticated Socket.IO connection."""

    sid: str
    user_id: int
    username: str
    client_id: str
    #: The ``jti`` of the token it authenticated with, so logout can close it.
    token_jti: str | None = None
    #: The token's expiry (epoch seconds); the session is closed then.
    expires_at: float | None = None
    connected_at: Any = field(default_factory=utcnow)

    def is_open(self) -> bool:
        return _sessions.get(self.sid) is self

    def end(self, code: str, message: str) -> None:
        from ..extensions import socketio

        socketio.server.emit("error", error_message(code, message), to=self.sid, namespace="/", ignore_queue=True)
        socketio.server.disconnect(self.sid, namespace="/", ignore_queue=True)

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= time.time()


_lock = threading.Lock()
_sessions: dict[str, ConnectionInfo] = {}
#: Sessions served outside Socket.IO — plain WebSockets and SSE streams, each naming its
#: ``transport`` (``plain``, ``sse``) — open in this process (their handlers add and remove).
plain_sessions: set[Any] = set()


class ExpiryWatch:
    """Ends sessions when their token expires, and those whose token was revoked where
    this process did not hear of it: one heap and one task per process."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Session]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._started = False
        self._app: Flask | None = None

    def watch(self, session: Session) -> None:
        """Close ``session`` once its ``expires_at`` has passed, or its token is revoked."""
        with self._lock:
            if session.expires_at is not None:
                heapq.heappush(self._heap, (session.expires_at, next(self._order), session))
            start = not self._started
            self._started = True
        if start:
            from ..extensions import socketio

            self._app = current_app._get_current_object()  # type: ignore[attr-defined]
            socketio.start_background_task(self._run)

    def due(self, now: float) -> list[Session]:
        """Pop the sessions whose expiry has passed and that are still open."""
        found = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, _, session = heapq.heappop(self._heap)
                found.append(session)
        return [session for session in found if session.is_open()]

    def forget_closed(self) -> int:
        """Drop closed sessions from the heap (else each stays until its token's expiry,
        which may be an hour of reconnects away); returns how many were dropped."""
        with self._lock:
            kept = [entry for entry in self._heap if entry[2].is_open()]
            dropped = len(self._heap) - len(kept)
            if dropped:
                heapq.heapify(kept)
                self._heap = kept
        return dropped

    def _run(self) -> None:
        from ..extensions import socketio

        next_recheck = time.monotonic() + REVOCATION_RECHECK_INTERVAL
        while True:
            for session in self.due(time.time()):
                session.end("token_expired", "the token has expired; reconnect with a fresh token")
            if time.monotonic() >= next_recheck and self._app is not None:
                next_recheck = time.monotonic() + REVOCATION_RECHECK_INTERVAL
                self.forget_closed()
                try:
                    with self._app.app_context():
                        recheck_revocations()
                except Exception:
                    log.exception("checking open sessions against revoked tokens failed")
            with self._lock:
                wait = self._heap[0][0] - time.time() if self._heap else EXPIRY_CHECK_INTERVAL
            socketio.sleep(min(max(wait, 0.0), EXPIRY_CHECK_INTERVAL))


expiry_watch = ExpiryWatch()


def register(info: ConnectionInfo) -> None:
    """Remember an authenticated Socket.IO connection and watch its token's expiry."""
    with _lock:
        _sessions[info.sid] = info
    expiry_watch.watch(info)


def unregister(sid: str) -> ConnectionInfo | None:
    """Forget a Socket.IO connection."""
    with _lock:
        return _sessions.pop(sid, None)


def lookup(sid: str) -> ConnectionInfo | None:
    """The connection's identity, if authenticated."""
    return _sessions.get(sid)


def current() -> ConnectionInfo:
    """The Socket.IO connection of the handler running now; refused once its token expired."""
    info = _sessions.get(request.sid)  # type: ignore[attr-defined]
    if info is None:  # the connect handler refused, or the session is gone
        raise BadRequest("not connected", code="not_connected")
    if info.expired():
        raise Unauthorized("the token has expired; reconnect with a fresh token", code="token_expired")
    return info


def connection_counts() -> dict[str, int]:
    """Open connections of this process, by protocol."""
    sessions = list(plain_sessions)
    return {
        "socketio": len(_sessions),
        "websocket": sum(1 for session in sessions if session.transport == "plain"),
        "websocket_subscribed": sum(1 for conn in plain_rooms.connections() if conn.transport == "plain"),
        "sse": sum(1 for session in sessions if session.transport == "sse"),
    }


def disconnect_token(jti: str) -> int:
    """End this process's sessions (both transports) that authenticated with token ``jti``."""
    with _lock:
        sessions: list[Session] = [info for info in _sessions.values() if info.token_jti == jti]
    sessions += [conn for conn in list(plain_sessions) if conn.token_jti == jti]
    for session in sessions:
        session.end("token_revoked", TOKEN_REVOKED_MESSAGE)
    return len(sessions)


def revoke_token(jti: str, expires_at: float | None) -> int:
    """A token was revoked (its row is committed): end its sessions on every process.

    Returns how many sessions this process ended; the others end theirs when the notice
    reaches them (a few milliseconds through Redis).
    """
    closed = _forget_token({"jti": jti, "exp": expires_at})
    broadcast_notice(TOKEN_REVOKED_NOTICE, {"jti": jti, "exp": expires_at})
    return closed


def _forget_token(notice: dict[str, Any]) -> int:
    """This process's part of a revocation: no more cache hits, no more sessions."""
    jti = str(notice.get("jti"))
    exp = notice.get("exp")
    token_cache.revoke(jti, float(exp) if isinstance(exp, int | float) else None)
    return disconnect_token(jti)


notice_handlers[TOKEN_REVOKED_NOTICE] = _forget_token


def recheck_revocations() -> int:
    """End the open sessions whose token is in the revoked-token table; returns how many.

    Revocation notices travel over the message queue; one sent while it was down never
    arrives. The table is the truth every process can read.
    """
    with _lock:
        sessions: list[Session] = list(_sessions.values())
    sessions += list(plain_sessions)
    jtis = sorted({session.token_jti for session in sessions if session.token_jti and session.is_open()})
    revoked: list[tuple[str, Any]] = []
    try:
        for start in range(0, len(jtis), RECHECK_CHUNK):
            chunk = jtis[start : start + RECHECK_CHUNK]
            query = select(RevokedToken.jti, RevokedToken.expires_at).where(RevokedToken.jti.in_(chunk))
            revoked += [(row.jti, row.expires_at) for row in db.session.execute(query)]
    finally:
        db.session.rollback()
    return sum(_forget_token({"jti": jti, "exp": expires_at.timestamp()}) for jti, expires_at in revoked)


def ended_if_revoked(session: Session) -> bool:
    """End a just-registered session whose token this process has heard revoked (a
    connect that raced the revocation); True when it did."""
    if token_cache.is_revoked(session.token_jti):
        session.end("token_revoked", TOKEN_REVOKED_MESSAGE)
        return True
    return False
