"""Per-connection and per-user limits, the same on Socket.IO and plain WebSocket.

* **Inbound rate** (:class:`InboundLimiter`): a token bucket per connection
  (``SOCKET_RATE_LIMIT`` messages/s, ``SOCKET_RATE_BURST`` at once). A message over the
  limit is dropped before any handler runs; the client gets an ``error`` ``rate_limited``
  at most once a second, and after ``SOCKET_RATE_DISCONNECT_AFTER`` refusals without the
  bucket filling up again in between (the client never paused) the connection is closed.
  One client's flood costs little and raises nobody else's latency.
* **Connections per user** (:class:`UserConnections`): at most
  ``MAX_CONNECTIONS_PER_USER`` open sockets per user in this process; the next is refused
  with ``too_many_connections``.
* **Unconnected Engine.IO sessions** (:func:`close_unconnected_sessions`): a session that
  never connects to the namespace (never authenticates) within ``SOCKET_CONNECT_TIMEOUT``
  is closed, even if it answers pings.

Subscriptions per connection are capped where subscribing happens (``events`` and the
plain-WS dialects) with :data:`subscription_cap`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from ..errors import TooMany
from ..extensions import socketio
from .messages import error_message

log = logging.getLogger(__name__)

OK, DROP, NOTIFY, DISCONNECT = "ok", "drop", "notify", "disconnect"


@dataclass
class _Bucket:
    tokens: float
    refill_at: float = field(default_factory=time.monotonic)
    #: Messages refused since the bucket was last full (sustained abuse adds up).
    refused: int = 0
    noticed_at: float = 0.0


class InboundLimiter:
    """Token buckets keyed by connection; ``check`` says what to do with one message."""

    def __init__(self, rate: float, burst: int, disconnect_after: int) -> None:
        self._buckets: dict[Hashable, _Bucket] = {}
        self.configure(rate, burst, disconnect_after)

    def configure(self, rate: float, burst: int, disconnect_after: int) -> None:
        """Set the limits (``rate`` 0: no limit)."""
        self.rate = rate
        self.burst = max(1, burst)
        self.disconnect_after = max(1, disconnect_after)

    def check(self, key: Hashable) -> str:
        """``ok`` (handle it), ``drop``, ``notify`` (drop and tell the client) or
        ``disconnect`` (close the connection)."""
        if self.rate <= 0:
            return OK
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), refill_at=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.refill_at) * self.rate)
        bucket.refill_at = now
        if bucket.tokens >= self.burst:
            bucket.refused = 0  # quiet long enough to fill up again: past refusals are forgiven
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return OK
        bucket.refused += 1
        if bucket.refused >= self.disconnect_after:
            return DISCONNECT
        if now - bucket.noticed_at >= 1.0:
            bucket.noticed_at = now
            return NOTIFY
        return DROP

    def forget(self, key: Hashable) -> None:
        self._buckets.pop(key, None)


class UserConnections:
    """Open connections per user in this process, against ``MAX_CONNECTIONS_PER_USER``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._holders: dict[int, set[Hashable]] = {}
        self._owners: dict[Hashable, int] = {}

    def acquire(self, user_id: int, key: Hashable) -> bool:
        """Count ``key`` as one of the user's connections; False when the cap is reached."""
        with self._lock:
            held = self._holders.setdefault(user_id, set())
            if self.cap > 0 and key not in held and len(held) >= self.cap:
                return False
            held.add(key)
            self._owners[key] = user_id
            return True

    def release(self, key: Hashable) -> None:
        """The connection ``key`` closed (no-op if it never counted)."""
        with self._lock:
            user_id = self._owners.pop(key, None)
            held = self._holders.get(user_id) if user_id is not None else None
            if held is not None:
                held.discard(key)
                if not held:
                    del self._holders[user_id]  # type: ignore[arg-type]


#: The process's limits, configured by :func:`init_limits`.
inbound = InboundLimiter(100.0, 200, 1000)
user_connections = UserConnections(100)
subscription_cap = {"max": 1000}

RATE_LIMITED = "too many messages: slow down (messages over the limit are dropped)"
TOO_MANY_CONNECTIONS = "too many open connections for this user"


#: Per connection, the jobs whose subscription is being made right now (see ``subscription_slot``).
_subscribing: dict[Hashable, set[int]] = {}


def check_subscription_room(conn: Hashable, job_id: int) -> None:
    """Raise ``TooMany`` when ``conn`` may not subscribe to one more job (re-subscribing to
    a job it has is always allowed); subscriptions still being made count as held."""
    from .delivery import ledger

    pending = _subscribing.get(conn, ())
    if ledger.has(conn, job_id) or job_id in pending:
        return
    # A subscription being made is in the ledger before its replay ends: count it once.
    being_made = sum(1 for pending_job in pending if not ledger.has(conn, pending_job))
    if ledger.count(conn) + being_made >= subscription_cap["max"]:
        raise TooMany(
            f"a connection may hold {subscription_cap['max']} job subscriptions; unsubscribe first",
            code="too_many_subscriptions",
        )


@contextmanager
def subscription_slot(conn: Hashable, job_id: int) -> Iterator[None]:
    """Check the cap and hold the slot until the subscription is made (or refused).

    Socket.IO runs a connection's messages side by side, and making a subscription reads
    the database (which yields on PostgreSQL): checked alone, 5,000 subscribes in a row
    were all under the cap when checked and 1,186 of them got in."""
    check_subscription_room(conn, job_id)
    pending = _subscribing.setdefault(conn, set())
    if job_id in pending:
        yield
        return
    pending.add(job_id)
    try:
        yield
    finally:
        pending.discard(job_id)
        if not pending:
            _subscribing.pop(conn, None)


def init_limits(app: Flask) -> None:
    """Read the limits; wrap Socket.IO's inbound path; start the unconnected-session sweep."""
    inbound.configure(
        float(app.config["SOCKET_RATE_LIMIT"]),
        int(app.config["SOCKET_RATE_BURST"]),
        int(app.config["SOCKET_RATE_DISCONNECT_AFTER"]),
    )
    user_connections.cap = int(app.config["MAX_CONNECTIONS_PER_USER"])
    subscription_cap["max"] = int(app.config["MAX_SUBSCRIPTIONS_PER_CONNECTION"])
    server = socketio.server
    if server is None:
        return
    _limit_socketio_inbound(server)
    timeout = float(app.config["SOCKET_CONNECT_TIMEOUT"])
    if timeout > 0 and server.eio.async_mode != "threading":
        socketio.start_background_task(_sweep_forever, server, timeout)


def _limit_socketio_inbound(server: Any) -> None:
    """Every Engine.IO message of a Socket.IO client passes the bucket before it is
    decoded or a handler task is started."""
    handle: Callable[[str, Any], Any] = server._handle_eio_message
    disconnect: Callable[[str, Any], Any] = server._handle_eio_disconnect

    def limited(eio_sid: str, data: Any) -> Any:
        verdict = inbound.check(eio_sid)
        if verdict == OK:
            return handle(eio_sid, data)
        sid = server.manager.sid_from_eio_sid(eio_sid, "/")
        if verdict in (NOTIFY, DISCONNECT) and sid is not None:
            server.emit("error", error_message("rate_limited", RATE_LIMITED), to=sid, namespace="/", ignore_queue=True)
        if verdict == DISCONNECT:
            log.warning("closing a Socket.IO connection that kept sending over its rate limit")
            inbound.forget(eio_sid)
            server.eio.disconnect(eio_sid)
        return None

    def forget(eio_sid: str, *args: Any) -> Any:
        inbound.forget(eio_sid)
        return disconnect(eio_sid, *args)

    server._handle_eio_message = limited
    server._handle_eio_disconnect = forget
    server.eio.on("message", limited)
    server.eio.on("disconnect", forget)


def close_unconnected_sessions(server: Any, timeout: float, first_seen: dict[str, float]) -> int:
    """One pass: close Engine.IO sessions that have not connected to ``/`` for ``timeout``."""
    now = time.monotonic()
    sockets = dict(server.eio.sockets)
    for eio_sid in list(first_seen):
        if eio_sid not in sockets:
            del first_seen[eio_sid]
    closed = 0
    for eio_sid in sockets:
        if server.manager.sid_from_eio_sid(eio_sid, "/") is not None:
            first_seen.pop(eio_sid, None)
            continue
        seen = first_seen.setdefault(eio_sid, now)
        if now - seen >= timeout:
            first_seen.pop(eio_sid, None)
            try:
                server.eio.disconnect(eio_sid)
                closed += 1
            except Exception:  # already gone
                pass
    return closed


def _sweep_forever(server: Any, timeout: float) -> None:
    first_seen: dict[str, float] = {}
    while True:
        socketio.sleep(min(2.0, timeout / 2))
        try:
            closed = close_unconnected_sessions(server, timeout, first_seen)
            if closed:
                log.info("closed %d Engine.IO session(s) that never authenticated", closed)
        except Exception:
            log.exception("sweeping unconnected Socket.IO sessions failed")
