"""Plain WebSocket transport (flask-sock): the same pipeline for clients without Socket.IO.

Three endpoints share :class:`PlainSocket` and differ only in their dialect
(:mod:`app.realtime.dialects`): ``/ws`` (Herald + seed 000), ``/ws/<client_id>`` (seed 002)
and ``/api/v1/ws/executions/<execution_id>`` (seed 004).

* **Origin** is checked before the handshake (flask-sock accepts the socket before the
  view runs): no Origin, a listed one, or the server's own is served; any other gets 403.
* **Auth**: ``Authorization: Bearer``, ``?token=``, or a first ``{"type": "auth", "token"}``
  within ``WEBSOCKET_AUTH_TIMEOUT``; otherwise an error frame and close 1008.
* **Delivery**: the connection joins rooms in ``plain_rooms``; fan-out calls
  :meth:`PlainSocket.deliver`. When nothing is queued and no write is under way, it renders
  and writes the frame straight to the socket without blocking (eventlet); otherwise — or
  when the kernel takes nothing — it appends to the queue, which the connection's sender
  task writes out. Past ``WEBSOCKET_SEND_QUEUE`` queued live messages the client is dropped
  with 1013, so a slow reader never slows the job or other clients.
* **Limits**: simple-websocket pings every ``WEBSOCKET_PING_INTERVAL`` s and closes a socket
  that missed a pong; a frame over ``SOCKET_MESSAGE_LIMIT`` is closed with 1009.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Flask, current_app, request
from simple_websocket import ConnectionClosed
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError

from .. import json_text
from ..auth.tokens import authenticate_socket, bearer_token
from ..errors import HeraldError, Unauthorized
from ..extensions import db, sock, socketio
from ..inputs import InvalidDocument, load_json
from ..metrics import CONNECTIONS_DROPPED, MESSAGES_DELIVERED, MESSAGES_DROPPED
from . import limits
from .commands import AUTH, FRAME, check
from .connections import ended_if_revoked, expiry_watch, plain_sessions
from .delivery import PLAIN_DIRECT, ledger, plain_rooms
from .dialects import Close, Dialect, Payload
from .dialects.batch import init_batch
from .dialects.client import ClientDialect
from .dialects.executions import ExecutionDialect
from .dialects.herald import HeraldDialect
from .frames import send_without_blocking, text_frame
from .gevent_websocket import end_connection
from .messages import Message
from .origins import origin_allowed

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__)

#: Close codes used here (RFC 6455 / IANA registry).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
#: Queued messages written together in one frame batch.
SEND_BATCH = 64
#: Seconds a closing connection waits for the peer's close reply.
CLOSE_REPLY_WAIT = 2.0


class _SerializedSocket:
    """The connection's socket with every write whole and under one lock.

    simple-websocket writes with ``send`` (which may write part of a frame) from two
    tasks: ours and its own reader (pings, pongs, close). Routing both through
    ``sendall`` under a lock keeps frames whole and never interleaved. A write that fails
    part-way (the send timeout on a reader that stopped) leaves a frame cut short: the
    socket is then shut down, since anything written after it — even the close frame —
    would reach the client as garbage.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._lock = threading.Lock()
        self.broken = False

    def send(self, data: bytes) -> int:
        with self._lock:
            if self.broken:
                raise BrokenPipeError("an earlier frame was cut short")
            try:
                self._raw.sendall(data)
            except OSError:
                self._break()
                raise
        return len(data)

    def try_write_now(self, data: bytes) -> bool:
        """Write ``data`` without blocking if no other write is under way: True when it
        went (all of it, or part and a task that keeps the lock sends the rest); False
        when it did not start at all.

        Only under eventlet (its green socket exposes the real, non-blocking one as
        ``fd``): nothing between the check of the lock and the write can switch greenlets,
        so a free lock stays free, and it is only taken when part of the frame is left.
        """
        raw_fd = getattr(self._raw, "fd", None)
        if self.broken or raw_fd is None or self._lock.counter < 1:  # type: ignore[attr-defined]
            return False
        sent = send_without_blocking(raw_fd, data)
        if sent == 0:
            return False
        if sent < len(data):
            self._lock.acquire()  # free (see above): held until the rest is written
            socketio.start_background_task(self._finish_write, data[sent:])
        return True

    def _finish_write(self, rest: bytes) -> None:
        try:
            self._raw.sendall(rest)
        except OSError:
            self._break()  # the reader and the sender find out and end the connection
        finally:
            self._lock.release()

    def _break(self) -> None:
        self.broken = True
        try:
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    sendall = send

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


_encoded: dict[int, tuple[Any, str, bytes]] = {}
_PLAIN_DELIVERED = MESSAGES_DELIVERED.labels("plain", "queued")


def _encoded_entry(payload: Payload) -> tuple[Any, str, bytes]:
    key = id(payload)
    hit = _encoded.get(key)
    if hit is not None and hit[0] is payload:
        return hit
    text = json_text.dumps(payload, default=str)
    if len(_encoded) > 256:
        _encoded.clear()
    entry = _encoded[key] = (payload, text, text_frame(text))
    return entry


def _encode(payload: Payload) -> str:
    """JSON text of a payload; fan-out sends one message object to many sockets."""
    return _encoded_entry(payload)[1]


def _shared_frame(payload: Payload) -> bytes:
    """The uncompressed WebSocket frame of a payload, built once for every socket."""
    return _encoded_entry(payload)[2]


class PlainSocket:
    """One plain-WebSocket connection: identity, dialect, bounded send queue, sender task."""

    transport = "plain"

    def __init__(
        self, ws: Any, dialect: Dialect, *, queue_limit: int, send_timeout: float, send_buffer: int = 0
    ) -> None:
        self.ws = ws
        self.dialect = dialect
        self.queue_limit = queue_limit
        self.user_id: int = 0
        #: The ``jti`` of the token it authenticated with, so logout can close it.
        self.token_jti: str | None = None
        #: The token's expiry (epoch seconds); the connection is closed then.
        self.expires_at: float | None = None
        self.username = ""
        #: False once closing started: deliveries are ignored from then on.
        self.open = True
        self._queue: deque[tuple[str, Any]] = deque()
        self._live_pending = 0
        self._wake = threading.Event()
        self._closing: tuple[int, str] | None = None
        self._sender_done = threading.Event()
        self._raw = ws.sock
        #: Deliveries may be written straight to the socket (eventlet's green socket
        #: exposes the real, non-blocking one); elsewhere they always take the queue.
        self._direct = getattr(ws.sock, "fd", None) is not None
        try:
            self._raw.settimeout(send_timeout)  # reads only happen once select says readable
            if send_buffer:
                self._raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        except OSError:
            pass
        ws.sock = _SerializedSocket(self._raw)
        #: Without a negotiated extension (compression) every socket gets the same bytes
        #: for a payload: the frame is built once per message, not by wsproto per socket.
        protocol = getattr(getattr(ws.ws, "connection", None), "_proto", None)
        self._shared_frames = protocol is not None and not protocol.extensions
        # Under gevent simple-websocket works on a dup of the server's socket, so closing
        # it leaves the connection open: the request's environ lets us end it ourselves.
        self._gevent_environ: dict[str, Any] | None = ws.environ if getattr(ws, "mode", "") == "gevent" else None

    def __repr__(self) -> str:
        return f"<PlainSocket {self.dialect.name} user={self.user_id}>"

    # -- session (see connections.Session) -----------------------------------------

    def is_open(self) -> bool:
        return self.open

    def end(self, code: str, message: str) -> None:
        """Send the dialect's error frame, then close with 1008 (policy)."""
        self.send(self.dialect.error(code, message))
        self.close(CLOSE_POLICY, message[:120])

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= time.time()

    # -- queueing (any task) ----------------------------------------------------

    def deliver(self, message: Message) -> None:
        """Fan-out entry point: queue a pipeline message, or drop a client that lags."""
        if not self.open or not self.dialect.wants(message):
            return
        if self._live_pending >= self.queue_limit:
            self.drop(CLOSE_TRY_AGAIN_LATER, "too slow: the send queue is full")
            return
        if not self._queue and self._direct and self._closing is None and self._write_now(message):
            return
        self._live_pending += 1
        self._queue.append(("live", message))
        self._wake.set()

    def _write_now(self, message: Message) -> bool:
        """Render and write ``message`` straight to the socket when nothing is queued and no
        write is under way (no wake-up of the sender); False to take the queue instead."""
        payloads = self.dialect.render(self, message)
        if any(isinstance(payload, Close) for payload in payloads):
            self._queue.append(("rendered", payloads))  # the sender closes in order
            self._live_pending += 1
            self._wake.set()
            return True
        if not payloads:
            return True
        if len(payloads) == 1:
            data = self._frame(payloads[0])  # type: ignore[arg-type]
        else:
            data = b"".join(self._frame(payload) for payload in payloads)  # type: ignore[arg-type]
        if self.ws.connected and self.ws.sock.try_write_now(data):
            PLAIN_DIRECT.pending += len(payloads)
            return True
        self._queue.append(("framed", data))  # rendered already: the sender writes it as is
        self._live_pending += 1
        self._wake.set()
        return True

    def _frame(self, payload: Payload) -> bytes:
        """The WebSocket frame of ``payload`` for this connection."""
        if self._shared_frames:
            return _shared_frame(payload)
        # wsproto, the state machine simple-websocket frames with, compresses per socket.
        return self.ws.ws.send(TextMessage(data=_encode(payload)))  # type: ignore[no-any-return]

    def send(self, payload: Payload) -> None:
        """Queue a reply as is (answers, errors, greetings)."""
        self.send_batch([payload], ())

    def send_batch(self, payloads: Iterable[Payload], messages: Iterable[Message]) -> None:
        """Queue replies, then pipeline messages (replay), in one step so nothing overtakes."""
        if self._closing is not None:
            return
        self._queue.extend(("raw", payload) for payload in payloads)
        self._queue.extend(("job", message) for message in messages)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """Close after everything queued so far has been sent."""
        if self._closing is not None:
            return
        self.open = False
        self._queue.append(("close", (code, reason)))
        self._wake.set()

    def drop(self, code: int, reason: str) -> None:
        """Close now: discard what is queued (the client cannot keep up)."""
        if self._closing is not None:
            return
        log.info("dropping %r: %s", self, reason)
        CONNECTIONS_DROPPED.labels("plain").inc()
        MESSAGES_DROPPED.labels("plain").inc(self._live_pending)
        self.open = False
        self._closing = (code, reason)
        self._queue.clear()
        self._live_pending = 0
        plain_rooms.leave(self)
        self._wake.set()

    # -- the sender task --------------------------------------------------------

    def start(self) -> None:
        """Start the sender task."""
        socketio.start_background_task(self._sender)

    def _sender(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                while self._queue and self._closing is None:
                    chunks, close = self._next_frames()
                    if chunks:
                        self._write(chunks)
                    if close is not None:
                        self._close_now(close.code, close.reason)
                        return
                if self._closing is not None:
                    self._close_now(*self._closing)
                    return
        except (OSError, ConnectionClosed, LocalProtocolError):  # the peer went away mid-send
            self._abort()
        except Exception:
            log.exception("plain WebSocket sender failed")
            self._abort()
        finally:
            self.open = False
            self._sender_done.set()
            self._wake_handler()

    def _next_frames(self) -> tuple[list[bytes], Close | None]:
        """Up to ``SEND_BATCH`` queued items, framed, and a close if one comes first."""
        chunks: list[bytes] = []
        close: Close | None = None
        count = 0
        while self._queue and count < SEND_BATCH and self._closing is None and close is None:
            kind, item = self._queue.popleft()
            count += 1
            if kind == "close":
                close = Close(*item)
                break
            if kind in ("live", "rendered", "framed"):
                self._live_pending -= 1
            if kind == "framed":
                chunks.append(item)
                continue
            if kind == "raw":
                payloads: list[Payload | Close] = [item]
            elif kind == "rendered":
                payloads = item
            else:
                payloads = self.dialect.render(self, item)
            for payload in payloads:
                if isinstance(payload, Close):
                    close = payload
                    break
                chunks.append(self._frame(payload))
        if chunks:
            _PLAIN_DELIVERED.inc(len(chunks))
        return chunks, close

    def _write(self, chunks: list[bytes]) -> None:
        """Write framed messages with one call (one lock, one syscall)."""
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        self.ws.sock.send(b"".join(chunks))

    def _close_now(self, code: int, reason: str) -> None:
        self.open = False
        try:
            # (wsproto cuts the reason to a close frame's 123 bytes, on a character.)
            self.ws.close(reason=code, message=reason)
        except (ConnectionClosed, LocalProtocolError):  # already closed, or closing
            pass
        except OSError:
            self._abort()

    def _abort(self) -> None:
        """Tear the socket down without a close frame (it could not be written)."""
        self.open = False
        self.ws.connected = False
        try:
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _wake_handler(self) -> None:
        # ws.close() does not wake a handler blocked in receive(); setting its event does.
        event = getattr(self.ws, "event", None)
        if event is not None:
            event.set()

    def finish(self, timeout: float) -> None:
        """Stop the sender (after the queue) and wait for it; called when the handler ends."""
        self.close(CLOSE_NORMAL, "bye")
        self._sender_done.wait(timeout)
        # Wait (briefly) for the peer's close reply before the server closes the socket:
        # closing with the peer's frames still unread makes the kernel reset the
        # connection, and a reset discards what the peer had not read yet — a flooder
        # would lose the error telling it why it was closed.
        reader = getattr(self.ws, "thread", None)
        if reader is not None:
            reader.join(CLOSE_REPLY_WAIT)
        if self._gevent_environ is not None:
            end_connection(self._gevent_environ)

    def detach(self) -> None:
        """Let go of the socket once the handler is done: the expiry watch may still hold
        the session until its next sweep of closed ones, and must not hold the WebSocket,
        its reader thread and buffers (~40 kB) with it."""
        self.open = False
        self._closing = self._closing or (CLOSE_NORMAL, "gone")
        self._queue.clear()
        self._live_pending = 0
        self.ws = self._raw = self._gevent_environ = None


def _authenticate(conn: PlainSocket, auth_timeout: float) -> bool:
    """Identify the user from the handshake or a first ``auth`` message; refuse otherwise."""
    token = bearer_token()
    try:
        if token is None:
            raw = conn.ws.receive(timeout=auth_timeout)
            if raw is None:
                conn.end("auth_timeout", f"no auth message within {auth_timeout:g} s")
                return False
            try:
                first = load_json(raw) if isinstance(raw, str) else None
            except InvalidDocument:
                first = None
            if not isinstance(first, dict) or first.get("type") != "auth":
                conn.end("auth_required", 'the first message must be {"type": "auth", "token": ...}')
                return False
            token = first["token"] if _fits(AUTH, first) else None
        identity = authenticate_socket(token)
    except Unauthorized as exc:
        conn.end(exc.code, exc.message)
        return False
    finally:
        db.session.remove()
    conn.user_id = identity.user_id
    conn.username = identity.username
    conn.token_jti = identity.jti
    conn.expires_at = identity.expires_at
    if ended_if_revoked(conn):  # revoked while this connect was checking it
        return False
    expiry_watch.watch(conn)
    return True


def _parse(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str):
        raise HeraldError("binary frames are not supported; send JSON text", code="invalid_json")
    try:
        message = load_json(raw)
    except InvalidDocument as exc:
        raise HeraldError(f"the message is not valid JSON: {exc}", code="invalid_json") from None
    return check(FRAME, message, "a message")  # type: ignore[no-any-return]


def _fits(schema: dict[str, Any], message: Any) -> bool:
    try:
        check(schema, message, "")
    except HeraldError:
        return False
    return True


def serve(ws: Any, dialect: Dialect) -> None:
    """Run one connection: authenticate, open the dialect, handle frames until closed."""
    config = current_app.config
    conn = PlainSocket(
        ws,
        dialect,
        queue_limit=int(config["WEBSOCKET_SEND_QUEUE"]),
        send_timeout=float(config["WEBSOCKET_SEND_TIMEOUT"]),
        send_buffer=int(config["WEBSOCKET_SEND_BUFFER"]),
    )
    plain_sessions.add(conn)
    conn.start()
    try:
        if not _authenticate(conn, float(config["WEBSOCKET_AUTH_TIMEOUT"])):
            return
        if not limits.user_connections.acquire(conn.user_id, conn):
            conn.end("too_many_connections", limits.TOO_MANY_CONNECTIONS)
            return
        try:
            dialect.open(conn)
        finally:
            db.session.remove()
        while conn.open:
            try:
                raw = ws.receive()
            except ConnectionClosed:
                break
            if raw is None:
                continue
            if conn.expired():
                conn.end("token_expired", "the token has expired; reconnect with a fresh token")
                break
            verdict = limits.inbound.check(conn)
            if verdict != limits.OK:
                if verdict == limits.DISCONNECT:
                    conn.end("rate_limited", "too many messages for too long: closing")
                    break
                if verdict == limits.NOTIFY:
                    conn.send(dialect.error("rate_limited", limits.RATE_LIMITED))
                continue
            try:
                message = _parse(raw)
                if message["type"] == "auth":
                    raise HeraldError("already authenticated", code="already_authenticated")
                dialect.handle(conn, message)
            except HeraldError as exc:
                conn.send(dialect.error(exc.code, exc.message))
            except Exception:  # never let a bug end the view: flask-sock would write HTTP 500 into the socket
                log.exception("plain WebSocket %s: a client message could not be handled", dialect.name)
                conn.send(dialect.error("internal_error", "the message could not be handled; it has been logged"))
            finally:
                db.session.remove()  # the handler lives as long as the socket: no stale rows
    except Exception:  # a bug outside one message: close with 1011, never an HTTP 500 in the socket
        log.exception("plain WebSocket %s failed", dialect.name)
        conn.send(dialect.error("internal_error", "the connection failed; it has been logged"))
        conn.close(CLOSE_INTERNAL_ERROR, "internal error")
    finally:
        limits.user_connections.release(conn)
        limits.inbound.forget(conn)
        plain_rooms.leave(conn)
        ledger.forget(conn)
        conn.finish(float(config["WEBSOCKET_SEND_TIMEOUT"]) + 1)
        plain_sessions.discard(conn)
        conn.detach()
        db.session.remove()


@bp.before_request
def check_origin() -> Any:
    """Refuse cross-site WebSocket hijacking: a browser Origin must be listed or our own."""
    origin = request.headers.get("Origin")
    if origin_allowed(origin, request.environ, current_app.config["CORS_ALLOWED_ORIGINS"]):
        return None
    return {"error": {"code": "origin_forbidden", "message": f"origin {origin!r} is not allowed"}}, 403


@sock.route("/ws", bp=bp)
def herald_socket(ws: Any) -> None:
    """``/ws``: Herald's messages (subscribe, replay, ping, echo) and seed 000's batches."""
    serve(ws, HeraldDialect())


@sock.route("/ws/<client_id>", bp=bp)
def client_socket(ws: Any, client_id: str) -> None:
    """``/ws/<client_id>``: seed 002 — greeting, ping, echo, subscription, your progress."""
    serve(ws, ClientDialect(client_id))


@sock.route("/api/v1/ws/executions/<execution_id>", bp=bp)
def execution_socket(ws: Any, execution_id: str) -> None:
    """``/api/v1/ws/executions/<id>``: seed 004 — one workflow execution's status."""
    serve(ws, ExecutionDialect(execution_id))


def init_ws(app: Flask) -> None:
    """Bind the plain-WebSocket endpoints, their limits and the seed-000 adapter."""
    options = dict(app.config.get("SOCK_SERVER_OPTIONS") or {})
    options.setdefault("ping_interval", max(1, int(app.config["WEBSOCKET_PING_INTERVAL"])))
    options.setdefault("max_message_size", int(app.config["SOCKET_MESSAGE_LIMIT"]))
    app.config["SOCK_SERVER_OPTIONS"] = options
    app.register_blueprint(bp)
    init_batch()
