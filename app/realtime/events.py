"""Socket.IO handlers (default namespace). Every message out is ``{type, job_id, seq,
timestamp, data}``; every refusal is an ``error`` message and, when the client asked for
an acknowledgement, ``{ok: false, error: {code, message}}``. The connection stays up.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import parse_qs

from flask import request
from flask_socketio import ConnectionRefusedError, emit, join_room, leave_room

from ..auth.cache import token_cache
from ..auth.tokens import authenticate_socket
from ..errors import BadRequest, HeraldError, NotFound
from ..extensions import socketio
from ..inputs import CLIENT_ID_RULE, is_client_id, parse_id
from ..models.base import isoformat, utcnow
from . import connections
from .commands import SOCKETIO_EVENTS, check
from .connections import ConnectionInfo
from .delivery import ledger, send_to_sid
from .limits import TOO_MANY_CONNECTIONS, subscription_slot, user_connections
from .messages import Message, error_message, make_message
from .packets import INTERNAL_EVENTS, INVALID_PACKET_EVENT, MALFORMED_EVENT, TOO_LARGE_EVENT, TolerantPacket
from .rooms import client_room, job_room, user_jobs_room, user_room
from .subscriptions import subscribe_job, unsubscribe_job

Ack = dict[str, Any]

log = logging.getLogger(__name__)


def _echo_to_sid(sid: str, message: Message) -> None:
    """Send a message carrying what the client sent (which may hold binary attachments)
    straight to its connection, through python-socketio's encoder."""
    socketio.server.emit(message["type"], message, to=sid, namespace="/", ignore_queue=True)


def _error_ack(exc: HeraldError, *, notify: bool = True) -> Ack:
    if notify:
        send_to_sid(request.sid, error_message(exc.code, exc.message))  # type: ignore[attr-defined]
    return {"ok": False, "error": {"code": exc.code, "message": exc.message}}


def socket_handler(func: Callable[..., Ack]) -> Callable[..., Ack]:
    """Turn Herald errors into an ``error`` message plus an ``{ok: false}`` ack."""

    @wraps(func)
    def wrapper(*args: Any) -> Ack:
        try:
            return func(*args)
        except HeraldError as exc:
            return _error_ack(exc)

    return wrapper


def payload_of(event: str, args: tuple[Any, ...]) -> Any:
    """The event's payload, checked against its schema in ``commands.SOCKETIO_EVENTS``."""
    return check(SOCKETIO_EVENTS[event], args[0] if args else None, event)


def _refused(code: str, message: str) -> ConnectionRefusedError:
    """A refusal the client can read: ``connect_error`` gets ``message`` and ``data:
    {code, message}`` (socket.io-client: ``err.message``, ``err.data.code``)."""
    return ConnectionRefusedError(message, {"code": code, "message": message})


def on_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    """Sent by the client on connect with ``auth={token, client_id?}`` (or ``?token=``).

    Refused with ``{code, message}`` when the token is missing or bad; accepted
    connections join their client and user rooms and get ``connection_established``.

    A python-socketio handler (:func:`install_connection_handlers`), not Flask-SocketIO's:
    that one builds a Flask request for every event — its object, URL adapter, contexts
    and teardowns were about a third of a connect's handling — and a connect needs only
    the query string and an app context.
    """
    try:
        _accept(sid, environ, auth)
    except ConnectionRefusedError:
        raise
    except Exception:
        log.exception("accepting Socket.IO connection %s failed", sid)
        connections.unregister(sid)  # (no-ops if it got no further)
        user_connections.release(sid)
        raise _refused("internal_error", "the connection could not be accepted; it has been logged") from None


def _accept(sid: str, environ: dict[str, Any], auth: Any) -> None:
    auth = auth if isinstance(auth, dict) else {}
    if MALFORMED_EVENT in auth:  # the CONNECT's auth did not parse (see packets.py)
        raise _refused("invalid_json", f"the connect's auth is not valid JSON: {auth[MALFORMED_EVENT]}")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    token = auth.get("token") or _query_value(query, "token")
    app = environ["flask.app"]
    with app.app_context():
        try:
            identity = authenticate_socket(token if isinstance(token, str) else None)
        except HeraldError as exc:
            raise _refused(exc.code, exc.message) from None
        client_id = auth.get("client_id") or _query_value(query, "client_id") or uuid.uuid4().hex
        if not is_client_id(client_id):
            raise _refused("invalid_client_id", f"client_id must match {CLIENT_ID_RULE}")
        if not user_connections.acquire(identity.user_id, sid):
            raise _refused("too_many_connections", TOO_MANY_CONNECTIONS)
        connections.register(
            ConnectionInfo(
                sid=sid,
                user_id=identity.user_id,
                username=identity.username,
                client_id=client_id,
                token_jti=identity.jti,
                expires_at=identity.expires_at,
            )
        )
    if token_cache.is_revoked(identity.jti):  # revoked while this connect was checking it
        connections.unregister(sid)
        user_connections.release(sid)
        raise _refused("token_revoked", connections.TOKEN_REVOKED_MESSAGE)
    server = socketio.server
    server.enter_room(sid, client_room(identity.user_id, client_id), namespace="/")
    server.enter_room(sid, user_room(identity.user_id), namespace="/")
    greeting = make_message(
        "connection_established",
        {
            "sid": sid,
            "client_id": client_id,
            "user": identity.user,
            "server_time": isoformat(utcnow()),
        },
    )
    _greetings[sid] = greeting  # sent right after the CONNECT packet (greet_after_connect)


def _query_value(query: dict[str, list[str]], name: str) -> str | None:
    """The first value of a query-string parameter (as werkzeug's ``request.args.get``)."""
    values = query.get(name)
    return values[0] if values else None


def on_disconnect(sid: str, reason: Any = None) -> None:
    """Forget the connection's subscriptions and identity (a python-socketio handler, as
    :func:`on_connect`: it needs no Flask context at all)."""
    _greetings.pop(sid, None)
    ledger.forget(sid)
    connections.unregister(sid)
    user_connections.release(sid)


def install_connection_handlers(server: Any) -> None:
    """Register :func:`on_connect` and :func:`on_disconnect` on python-socketio's server
    itself (after Flask-SocketIO's ``init_app``, which registers its own wrappers)."""
    server.on("connect", on_connect, namespace="/")
    server.on("disconnect", on_disconnect, namespace="/")


#: Greetings of connections whose CONNECT packet is not sent yet, by sid.
_greetings: dict[str, Message] = {}


def greet_after_connect(server: Any) -> None:
    """Send each accepted connection its ``connection_established`` right after python-socketio
    sends the CONNECT packet, which follows the connect handler (a message sent from the
    handler would reach the client before it is connected, and be dropped)."""
    stock = server._handle_connect

    def handle_connect(eio_sid: str, namespace: str | None, data: Any) -> None:
        try:
            stock(eio_sid, namespace, data)
        finally:
            sid = server.manager.sid_from_eio_sid(eio_sid, namespace or "/")
            greeting = _greetings.pop(sid, None) if sid is not None else None
        if greeting is not None and server.manager.is_connected(sid, namespace or "/"):
            send_to_sid(sid, greeting)

    server._handle_connect = handle_connect


@socketio.on("ping")
@socket_handler
def on_ping(*args: Any) -> Ack:
    """Client → ``ping`` (any payload); server → ``pong`` echoing ``data`` for RTT."""
    connections.current()
    data = args[0] if args else None
    _echo_to_sid(request.sid, make_message("pong", {"echo": data, "server_time": isoformat(utcnow())}))  # type: ignore[attr-defined]
    return {"ok": True}


@socketio.on("echo")
@socket_handler
def on_echo(*args: Any) -> Ack:
    """Client → ``echo`` with any payload; server → ``echo`` with that payload in ``data``."""
    connections.current()
    payload = args[0] if args else None
    _echo_to_sid(request.sid, make_message("echo", payload if isinstance(payload, dict) else {"payload": payload}))  # type: ignore[attr-defined]
    return {"ok": True}


@socketio.on("subscribe")
def on_subscribe(*args: Any) -> Ack:
    """Client → ``subscribe {job_id, last_seq?}`` or ``{all: true}``.

    Ack ``{ok: true, job: snapshot}``; with ``last_seq`` the missed durable events and the
    latest progress are sent first and the ack adds ``resumed: "complete"`` — or, when
    that position cannot be replayed, a ``resync`` message is sent instead and the ack
    says ``resumed: "resync"``. A job that is not yours is ``not_found`` in the ack
    only: nothing else carrying its id reaches the client.
    """
    try:
        info = connections.current()
        payload = payload_of("subscribe", args)
        if payload.get("all") is True:
            join_room(user_jobs_room(info.user_id))
            return {"ok": True, "all": True}
        job_id = parse_id(payload["job_id"], "job_id")
        last_seq = payload.get("last_seq")
    except HeraldError as exc:
        return _error_ack(exc)
    sid: str = request.sid  # type: ignore[attr-defined]
    try:
        with subscription_slot(sid, job_id):
            subscribed = subscribe_job(
                sid,
                info.user_id,
                job_id,
                last_seq,
                join=lambda: join_room(job_room(job_id)),
                send=lambda message: send_to_sid(sid, message),
            )
    except NotFound as exc:
        return _error_ack(exc, notify=False)
    except HeraldError as exc:
        return _error_ack(exc)
    if subscribed.resume is None:
        return {"ok": True, "job": subscribed.snapshot}
    return {"ok": True, "job": subscribed.snapshot, "resumed": subscribed.resume.value}


@socketio.on("unsubscribe")
@socket_handler
def on_unsubscribe(*args: Any) -> Ack:
    """Client → ``unsubscribe {job_id}`` or ``{all: true}``; ack ``{ok: true}``."""
    info = connections.current()
    payload = payload_of("unsubscribe", args)
    if payload.get("all") is True:
        leave_room(user_jobs_room(info.user_id))
        return {"ok": True, "all": True}
    job_id = parse_id(payload["job_id"], "job_id")
    unsubscribe_job(request.sid, job_id, leave=lambda: leave_room(job_room(job_id)))  # type: ignore[attr-defined]
    return {"ok": True, "job_id": job_id}


@socketio.on("*")
def on_unknown(event: str, *args: Any) -> Ack:
    """Any other event: an ``error`` message (``unknown_event``, ``invalid_json``,
    ``invalid_payload``, ``message_too_large``)."""
    if event == MALFORMED_EVENT:
        reason = f": {args[0]}" if args else ""
        exc: HeraldError = BadRequest(f"the message is not valid JSON{reason}", code="invalid_json")
    elif event == INVALID_PACKET_EVENT:
        reason = f": {args[0]}" if args else ""
        exc = BadRequest(f"the message is not a Socket.IO event Herald reads{reason}", code="invalid_payload")
    elif event == TOO_LARGE_EVENT:
        size = args[0] if args else "?"
        exc = BadRequest(
            f"the message is {size} bytes; the limit is {TolerantPacket.max_event_bytes}", code="message_too_large"
        )
    else:
        exc = BadRequest(f"unknown event {event!r}", code="unknown_event")
    return _error_ack(exc)


def register_handler(event: str, handler: Callable[..., Any]) -> None:
    """Let another module add a Socket.IO event (seed dialects: ``subscribe_batch`` ...)."""
    if event in INTERNAL_EVENTS:
        raise ValueError(f"{event} is reserved")
    socketio.on_event(event, handler)


def emit_reply(message: Message) -> None:
    """Reply to the current Socket.IO client from inside a handler."""
    emit(message["type"], message)
