"""Server-Sent Events: the same pipeline over ``text/event-stream`` for ``EventSource``.

One :class:`EventStream` per open stream. It is a ``PlainConnection`` joined to the same
``plain_rooms`` as plain WebSockets, so the one fan-out (``delivery._LocalFanOut``) reaches
it through the same ledger, and a *session* (``connections.Session``) in
``plain_sessions``, so logout and expiry end it like any socket.

* **Wire**: a ``retry:`` hint first; every durable message is an event with
  ``id: <job_id>:<seq>``, ``event: <type>`` and ``data:`` the message JSON; progress ticks,
  the opening ``snapshot`` and ``resync`` go without an ``id:`` (they are not positions to
  resume from). An idle stream gets a ``: ping`` comment every ``SSE_HEARTBEAT_SECONDS``.
* **Resume**: the browser sends ``Last-Event-ID`` when it reconnects; a job stream passes
  it to :func:`subscriptions.subscribe_job` (the ledger holds live events while the
  database replays, then releases only what the replay did not cover). The ``all`` stream
  holds everything it is delivered while it reads the database (:meth:`EventStream.hold`)
  and drops what it has already written per job.
* **End**: a job stream ends after the job's final status; the ``all`` stream lasts as long
  as its session. A revoked or expired session gets an ``error`` event and the stream ends.
* **Slow readers**: the WSGI server writes each chunk with a blocking ``sendall``; live
  messages queue meanwhile. Past ``SSE_SEND_QUEUE`` of them the stream is cut off (its
  socket shut down, which also frees a writer blocked on it) and the backlog discarded:
  memory stays bounded, and the client resumes from its ``Last-Event-ID``.

Under eventlet and gevent the response generator runs in the request's greenlet; under
threading mode (in-process tests) in its thread. Nothing here blocks another connection.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from flask import Flask
from sqlalchemy import select

from .. import json_text
from ..errors import TooMany
from ..extensions import db
from ..metrics import CONNECTIONS_DROPPED, MESSAGES_DELIVERED, MESSAGES_DROPPED
from ..models import FINAL_STATUSES, Job, JobEvent
from .connections import ended_if_revoked, expiry_watch, plain_sessions
from .delivery import ledger, plain_rooms
from .limits import TOO_MANY_CONNECTIONS, user_connections
from .messages import Message, error_message, make_message
from .rooms import job_room, user_jobs_room
from .subscriptions import subscribe_job

log = logging.getLogger(__name__)

#: Queued items written in one chunk.
SEND_BATCH = 64
_FINAL = frozenset(status.value for status in FINAL_STATUSES)
_DELIVERED = MESSAGES_DELIVERED.labels("sse", "queued")


def encode_event(message: Message) -> bytes:
    """One SSE event: ``id:`` for durable messages, ``event:`` the type, ``data:`` the JSON."""
    data = json_text.dumps(message, default=str)
    head = f"id: {message['job_id']}:{message['seq']}\n" if is_durable(message) else ""
    return f"{head}event: {message.get('type', 'message')}\ndata: {data}\n\n".encode()


def is_durable(message: Message) -> bool:
    """Durable messages have a job and a seq: a position a reconnect can resume from."""
    return message.get("seq") is not None and message.get("job_id") is not None


def is_final_status(message: Message) -> bool:
    """A job's last durable message: its final ``job_status``."""
    data = message.get("data")
    return message.get("type") == "job_status" and isinstance(data, dict) and data.get("status") in _FINAL


def parse_last_event_id(raw: str | None) -> tuple[int | None, int] | None:
    """``<job_id>:<seq>`` (or a bare ``<seq>``) → ``(job_id, seq)``; None when absent.

    Raises ``ValueError`` for anything else (a seq or id outside ``0..2^63-1`` too).
    """
    if raw is None or raw.strip() == "":
        return None
    job_part, sep, seq_part = raw.strip().rpartition(":")
    seq = int(seq_part)
    job_id = int(job_part) if sep else None
    if seq < 0 or seq > 2**63 - 1 or (job_id is not None and not 1 <= job_id <= 2**63 - 1):
        raise ValueError(raw)
    return job_id, seq


class EventStream:
    """One open SSE stream: a ``PlainConnection`` for the fan-out and a session for auth."""

    transport = "sse"

    def __init__(
        self,
        *,
        user_id: int,
        token_jti: str | None,
        expires_at: float | None,
        job_id: int | None,
        queue_limit: int,
        heartbeat: float,
        retry_ms: int,
        environ: dict[str, Any] | None = None,
    ) -> None:
        self.user_id = user_id
        #: The access token the stream lives under (logout of it ends the stream).
        self.token_jti = token_jti
        self.expires_at = expires_at
        #: The one job this stream follows; None for every job of the user.
        self.job_id = job_id
        self.queue_limit = queue_limit
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        #: False once ending started: deliveries are ignored from then on.
        self.open = True
        self._queue: deque[tuple[str, Any]] = deque()
        self._live_pending = 0
        self._wake = threading.Event()
        self._dropped = False
        self._closed = False
        #: Last durable seq written per job (a message at or below it is not written again).
        self._written: dict[int, int] = {}
        #: Live messages delivered while the ``all`` stream reads the database; None when live.
        self._held: list[Message] | None = None
        self._socket = _raw_socket(environ) if environ is not None else None

    def __repr__(self) -> str:
        return f"<EventStream user={self.user_id} job={self.job_id or 'all'}>"

    def register(self, *, send_timeout: float, send_buffer: int = 0) -> None:
        """Count the stream against the user's connections (``TooMany`` past the cap) and
        watch its session like a socket's: expiry, revocation on any process. A
        ``send_buffer`` (bytes, 0: the OS's) bounds what the kernel holds for a slow reader."""
        if not user_connections.acquire(self.user_id, self):
            raise TooMany(TOO_MANY_CONNECTIONS, code="too_many_connections")
        plain_sessions.add(self)
        expiry_watch.watch(self)
        ended_if_revoked(self)
        if self._socket is not None:
            try:  # a write to a reader that stopped fails after this instead of never
                self._socket.settimeout(send_timeout)
                if send_buffer:
                    self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            except OSError:
                pass

    # -- the fan-out's side (PlainConnection) ---------------------------------------

    def deliver(self, message: Message) -> None:
        """Queue a live message; never blocks. A stream that lags too far is cut off."""
        if not self.open:
            return
        if self.job_id is not None and message.get("job_id") != self.job_id:
            return
        pending = len(self._held) if self._held is not None else self._live_pending
        if pending >= self.queue_limit:
            self.drop("too slow: the send queue is full")
            return
        if self._held is not None:
            self._held.append(message)
            return
        self._live_pending += 1
        self._queue.append(("live", message))
        self._wake.set()

    def send_first(self, messages: list[Message]) -> None:
        """Queue what a subscription sends before live messages (snapshot, replay)."""
        self._queue.extend(("first", message) for message in messages)
        self._wake.set()

    def hold(self) -> None:
        """Hold live messages back (the ``all`` stream, while it reads the database)."""
        self._held = []

    def release(self, replayed: list[Message]) -> None:
        """Queue ``replayed`` then the held messages; the per-job filter drops repeats."""
        held, self._held = self._held or [], None
        self.send_first(replayed + held)

    def finish_when_sent(self) -> None:
        """End the stream once what is queued so far has been written."""
        self._queue.append(("close", None))
        self._wake.set()

    # -- session (connections.Session) -------------------------------------------

    def is_open(self) -> bool:
        return self.open

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= time.time()

    def end(self, code: str, message: str) -> None:
        """Write an ``error`` event, then end the stream (revoked or expired token)."""
        if not self.open:
            return
        self.open = False
        self._queue.append(("error", error_message(code, message)))
        self._queue.append(("close", None))
        plain_rooms.leave(self)
        self._wake.set()

    def drop(self, reason: str) -> None:
        """Cut the stream off now and discard its backlog (the reader cannot keep up)."""
        if self._dropped:
            return
        log.info("dropping %r: %s", self, reason)
        CONNECTIONS_DROPPED.labels("sse").inc()
        MESSAGES_DROPPED.labels("sse").inc(self._live_pending + len(self._held or ()))
        self.open = False
        self._dropped = True
        self._queue.clear()
        self._held = None
        self._live_pending = 0
        plain_rooms.leave(self)
        self._wake.set()
        if self._socket is not None:
            try:  # wakes the request's greenlet if it is blocked writing to this reader
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the response body ---------------------------------------------------------

    def body(self) -> Iterator[bytes]:
        """The response: ``retry:``, then events as they come, pings while idle."""
        try:
            yield f"retry: {self.retry_ms}\n\n".encode()
            while not self._dropped:
                self._wake.clear()
                if not self._queue:
                    self._wake.wait(self.heartbeat)
                    if self._dropped:
                        break
                    if not self._queue:
                        yield b": ping\n\n"
                        continue
                chunk, done = self._next_chunk()
                if chunk:
                    yield chunk
                if done:
                    break
        finally:
            self.close()

    def _next_chunk(self) -> tuple[bytes, bool]:
        """Up to ``SEND_BATCH`` queued items as one chunk; True when the stream is done."""
        parts: list[bytes] = []
        done = False
        count = 0
        while self._queue and count < SEND_BATCH and not self._dropped:
            kind, item = self._queue.popleft()
            count += 1
            if kind == "live":
                self._live_pending -= 1
            if kind == "close":
                done = True
                break
            if is_durable(item):
                job_id, seq = item["job_id"], item["seq"]
                if seq <= self._written.get(job_id, 0):
                    continue
                self._written[job_id] = seq
            parts.append(encode_event(item))
            if self.job_id is not None and is_final_status(item):
                done = True
                break
        _DELIVERED.inc(len(parts))
        return b"".join(parts), done

    def close(self) -> None:
        """Forget the stream everywhere (idempotent: the body's end, or the response's close)."""
        if self._closed:
            return
        self._closed = True
        self.open = False
        plain_rooms.leave(self)
        ledger.forget(self)
        user_connections.release(self)
        plain_sessions.discard(self)
        self._queue.clear()
        self._held = None
        self._socket = None


def _raw_socket(environ: dict[str, Any]) -> Any:
    """The request's socket (to shut it down on a cut-off): gunicorn and werkzeug name it,
    eventlet.wsgi and gevent's pywsgi keep it in their input (as simple-websocket finds it)."""
    for key in ("gunicorn.socket", "werkzeug.socket"):
        if environ.get(key) is not None:
            return environ[key]
    eventlet_input = environ.get("eventlet.input")
    if eventlet_input is not None and hasattr(eventlet_input, "get_socket"):
        return eventlet_input.get_socket()
    rfile = environ.get("wsgi.input")
    if rfile is not None and not hasattr(rfile, "raw") and hasattr(rfile, "rfile"):
        rfile = rfile.rfile  # gevent's Input wraps the handler's reader
    return getattr(getattr(rfile, "raw", None), "_sock", None)


def open_job_stream(stream: EventStream, job_id: int, last_seq: int) -> dict[str, Any]:
    """Subscribe ``stream`` to one job it owns (``NotFound`` otherwise) through the ledger:
    a ``snapshot`` event, the durable events after ``last_seq``, the latest progress, then
    live. A job already final ends the stream once that is written. Returns the snapshot."""
    collected: list[Message] = []
    firsts: list[Message] = []
    subscribed = subscribe_job(
        stream,
        stream.user_id,
        job_id,
        last_seq,
        join=lambda: plain_rooms.join(stream, job_room(job_id)),
        send=collected.append,
        on_subscribed=lambda subscribed: firsts.append(
            make_message("snapshot", {"job": subscribed.snapshot}, job_id=job_id)
        ),
    )
    stream.send_first(firsts + collected)
    if subscribed.snapshot["status"] in _FINAL:
        stream.finish_when_sent()
    return subscribed.snapshot


def open_all_stream(stream: EventStream, cursor: tuple[int | None, int] | None) -> None:
    """Follow every job of the user, new ones too (the user's jobs room).

    With ``cursor`` (``Last-Event-ID`` ``<job_id>:<seq>``): that job is replayed after
    ``seq``, and every other job of the user from the moment that event was stored (the
    order this process sends events in: by when they were handed in). Live messages are
    held while the database is read, so nothing falls between the replay and live.
    """
    stream.hold()
    plain_rooms.join(stream, user_jobs_room(stream.user_id))
    replayed: list[Message] = []
    try:
        if cursor is not None:
            replayed = _replay_since(stream.user_id, cursor)
    finally:
        db.session.rollback()
        stream.release(replayed)


def _replay_since(user_id: int, cursor: tuple[int | None, int]) -> list[Message]:
    """Durable events of the user's jobs after the position ``cursor`` names, per job in seq order."""
    cursor_job, cursor_seq = cursor
    if cursor_job is None:
        raise ValueError("the all stream resumes from a <job_id>:<seq> event id")
    moment = db.session.execute(
        select(JobEvent.created_at)
        .join(Job, Job.id == JobEvent.job_id)
        .where(JobEvent.job_id == cursor_job, JobEvent.seq == cursor_seq, Job.owner_id == user_id)
    ).scalar_one_or_none()
    events: list[JobEvent] = []
    if cursor_seq > 0 or moment is not None:
        events += list(
            db.session.scalars(
                select(JobEvent)
                .join(Job, Job.id == JobEvent.job_id)
                .where(JobEvent.job_id == cursor_job, JobEvent.seq > cursor_seq, Job.owner_id == user_id)
                .order_by(JobEvent.seq)
            )
        )
    if moment is not None:
        events += list(
            db.session.scalars(
                select(JobEvent)
                .join(Job, Job.id == JobEvent.job_id)
                .where(Job.owner_id == user_id, JobEvent.job_id != cursor_job, JobEvent.created_at >= moment)
                .order_by(JobEvent.job_id, JobEvent.seq)
            )
        )
    return [event.to_message() for event in events]


#: Paths whose responses are event streams (see :class:`UnbufferedStreams`).
STREAM_PATHS = re.compile(r"^/api/(?:jobs/[^/]+/stream|stream)$")


class UnbufferedStreams:
    """WSGI middleware: eventlet.wsgi writes an event stream's chunks as they come.

    eventlet.wsgi gathers a body's chunks until 4 KiB before writing, so a ping or a single
    event would wait for the next ones. It reads ``eventlet.minimum_write_chunk_size`` from
    the environ it passed in — which a view cannot set, since Flask-SocketIO's middleware
    hands Flask a copy — so it is set here, outside that middleware.
    """

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if STREAM_PATHS.match(environ.get("PATH_INFO", "")):
            environ["eventlet.minimum_write_chunk_size"] = 0
        return self.wsgi_app(environ, start_response)


def init_sse(app: Flask) -> None:
    """Install :class:`UnbufferedStreams` around everything that may copy the environ."""
    app.wsgi_app = UnbufferedStreams(app.wsgi_app)  # type: ignore[method-assign]
