"""Process-local delivery: the last step between the pipeline and each connection.

Flask-SocketIO's client manager (in-memory, or Redis-backed when scaled out) decides which
connections of this process are in a room. This module adds the two things rooms alone
cannot do:

* **A per-connection ledger** of the last durable seq delivered for each job. A client
  that subscribes with ``last_seq`` is replayed from the database while live events for
  that job are held back; afterwards live events at or below the replayed seq are skipped.
  That is what makes "no gap, no duplicate" hold even when the publisher and the
  subscriber race, and across processes.
* **One fan-out** for Socket.IO sessions and plain sockets (:class:`_LocalFanOut`): a
  message is encoded once and every connection in its rooms passes the same ledger
  check, whether it was emitted here or arrived through the message queue.

It also carries **notices** between processes (:func:`broadcast_notice`): small
messages for the processes themselves, not for clients (a token was revoked). They travel
on python-socketio's own channel as an emit to :data:`NOTICE_NAMESPACE`, a namespace no
client can connect to, and each receiving process runs ``notice_handlers[name](data)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .. import extensions, json_text
from ..concurrency import Signal, Slicer, new_signal, non_yielding_lock
from ..metrics import MESSAGES_DELIVERED, DeferredCount
from .messages import Message, is_progress

log = logging.getLogger(__name__)

#: The namespace process-to-process notices are addressed to; clients never join it.
NOTICE_NAMESPACE = "/herald-notices"
#: ``name -> handler(data)``: what a process does when another tells it something.
notice_handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}


def broadcast_notice(name: str, data: dict[str, Any]) -> None:
    """Tell every other process of the deployment (a no-op without a message queue).

    Best effort, like every message on the queue: a notice published while Redis is away
    is lost, so what it says must also be in the database.
    """
    server = extensions.socketio.server
    manager = getattr(server, "manager", None)
    if isinstance(manager, HeraldRedisManager):
        manager.publish_notice(name, data)


def handle_notice(name: str, data: Any) -> None:
    """Run the handler of a notice another process sent (unknown names are ignored)."""
    handler = notice_handlers.get(name)
    if handler is None or not isinstance(data, dict):
        return
    try:
        handler(data)
    except Exception:
        log.exception("handling the %r notice from another process failed", name)


@dataclass
class _Subscription:
    """Delivery state of one job on one connection."""

    last_seq: int = 0
    #: Messages held back while the connection is being replayed; None when live.
    held: list[Message] | None = None


class Ledger:
    """Per-connection, per-job delivery state; thread- and greenlet-safe."""

    def __init__(self) -> None:
        self._lock = non_yielding_lock()
        self._subs: dict[tuple[Any, int], _Subscription] = {}
        #: The jobs each connection is subscribed to (the per-connection cap; forgetting a
        #: connection without scanning every subscription).
        self._jobs_of: dict[Any, set[int]] = {}

    def count(self, conn: Any) -> int:
        """How many jobs ``conn`` is subscribed to."""
        return len(self._jobs_of.get(conn, ()))

    def counts(self) -> dict[Any, int]:
        """A snapshot: how many jobs each subscribed connection holds (for metrics)."""
        with self._lock:
            return {conn: len(jobs) for conn, jobs in self._jobs_of.items()}

    def has(self, conn: Any, job_id: int) -> bool:
        """Whether ``conn`` is subscribed to ``job_id``."""
        return (conn, job_id) in self._subs

    def _entry(self, conn: Any, job_id: int) -> _Subscription:
        sub = self._subs.get((conn, job_id))
        if sub is None:
            sub = self._subs[(conn, job_id)] = _Subscription()
            self._jobs_of.setdefault(conn, set()).add(job_id)
        return sub

    def begin_replay(self, conn: Any, job_id: int) -> None:
        """Start holding live messages of ``job_id`` for ``conn``."""
        with self._lock:
            sub = self._entry(conn, job_id)
            sub.held = []

    def finish_replay(self, conn: Any, job_id: int, replayed_seq: int) -> list[Message]:
        """Go live after a replay up to ``replayed_seq``; returns held messages still due."""
        with self._lock:
            sub = self._entry(conn, job_id)
            held, sub.held = sub.held or [], None
            sub.last_seq = max(sub.last_seq, replayed_seq)
            due: list[Message] = []
            latest_progress: Message | None = None
            for message in held:
                if is_progress(message):
                    latest_progress = message
                elif message["seq"] is not None and message["seq"] > sub.last_seq:
                    sub.last_seq = message["seq"]
                    due.append(message)
            if latest_progress is not None:
                due.append(latest_progress)
            return due

    def hold_all(self) -> list[tuple[Any, int, int]]:
        """Start holding live messages of every live subscription; ``(conn, job_id, last_seq)`` each.

        Used after a message-queue outage: the caller replays each from the database
        (:func:`subscriptions.catch_up`) and releases with :meth:`finish_replay`.
        """
        with self._lock:
            held = []
            for (conn, job_id), sub in self._subs.items():
                if sub.held is None:
                    sub.held = []
                    held.append((conn, job_id, sub.last_seq))
            return held

    def forget(self, conn: Any, job_id: int | None = None) -> None:
        """Drop a connection's state for one job, or all of it."""
        with self._lock:
            if job_id is not None:
                self._subs.pop((conn, job_id), None)
                jobs = self._jobs_of.get(conn)
                if jobs is not None:
                    jobs.discard(job_id)
                    if not jobs:
                        del self._jobs_of[conn]
                return
            for job in self._jobs_of.pop(conn, ()):
                self._subs.pop((conn, job), None)

    def admitted(self, conns: Iterable[Any], message: Message) -> list[Any]:
        """The connections among ``conns`` a live message goes to now; holds it back for
        those being replayed. One lock for a whole fan-out, not one per connection."""
        job_id = message.get("job_id")
        if job_id is None:
            return list(conns)
        seq = message.get("seq")
        subs = self._subs
        due = []
        with self._lock:
            for conn in conns:
                sub = subs.get((conn, job_id))
                if sub is None:
                    due.append(conn)
                elif sub.held is not None:
                    sub.held.append(message)
                elif seq is None:
                    due.append(conn)
                elif seq > sub.last_seq:
                    sub.last_seq = seq
                    due.append(conn)
        return due


class PlainConnection(Protocol):
    """What a plain-WebSocket connection or an SSE stream offers to the fan-out."""

    #: ``plain`` or ``sse`` (metrics and ``/health`` count them apart).
    transport: str

    def deliver(self, message: Message) -> None:
        """Queue ``message`` for sending; must not block."""


@dataclass
class PlainRooms:
    """Rooms of plain-WebSocket connections in this process."""

    rooms: dict[str, set[PlainConnection]] = field(default_factory=dict)
    lock: Any = field(default_factory=non_yielding_lock)

    def join(self, conn: PlainConnection, room: str) -> None:
        """Put ``conn`` in ``room``."""
        with self.lock:
            self.rooms.setdefault(room, set()).add(conn)

    def leave(self, conn: PlainConnection, room: str | None = None) -> None:
        """Take ``conn`` out of ``room``, or out of every room."""
        with self.lock:
            names = [room] if room is not None else list(self.rooms)
            for name in names:
                members = self.rooms.get(name)
                if members is not None:
                    members.discard(conn)
                    if not members:
                        del self.rooms[name]

    def members(self, rooms: Iterable[str]) -> set[PlainConnection]:
        """Every connection in any of ``rooms``, once."""
        with self.lock:
            found: set[PlainConnection] = set()
            for name in rooms:
                found |= self.rooms.get(name, set())
            return found

    def connections(self) -> set[PlainConnection]:
        """Every connection in any room, once."""
        with self.lock:
            return set().union(*self.rooms.values()) if self.rooms else set()


#: The process-wide delivery state (one Socket.IO server per process).
ledger = Ledger()
plain_rooms = PlainRooms()


class Outbox:
    """Every message of this process leaves from here, in the order it was put, sent by
    one background loop: whoever puts it (a job ticking, the journal after a commit) goes
    on at once, however many watch."""

    def __init__(self, send: Callable[[Message, int, tuple[str, ...]], None]) -> None:
        #: ``send(message, owner_id, rooms)``: the fan-out itself.
        self.send = send
        self._queue: deque[tuple[Message, int, tuple[str, ...]]] = deque()
        self._wake: Signal | None = None
        self._lock = threading.Lock()
        self._busy = False

    def put(self, message: Message, owner_id: int, rooms: tuple[str, ...]) -> None:
        """Queue ``message`` for ``rooms``; never blocks."""
        self._queue.append((message, owner_id, rooms))
        wake = self._wake
        if wake is None:
            with self._lock:
                if self._wake is None:
                    self._wake = new_signal()  # built lazily: after monkey-patching
                    extensions.socketio.start_background_task(self._loop)
                wake = self._wake
        wake.set()

    def send_or_put(self, message: Message, owner_id: int, rooms: tuple[str, ...]) -> None:
        """From a background loop (the ticker): sent here and now when nothing waits in
        the outbox (the order holds), else queued behind what does. Saves the outbox's
        wake-up and a queue round trip per message. In threading mode always queued: one
        thread sends at a time."""
        if self._queue or self._busy or self._wake is None or extensions.socketio.async_mode == "threading":
            self.put(message, owner_id, rooms)
            return
        self._busy = True
        self._send_one(message, owner_id, rooms)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything put so far has been sent (a Celery task's end, tests)."""
        deadline = time.monotonic() + timeout
        while self._queue or self._busy:
            if time.monotonic() > deadline:
                return False
            extensions.socketio.sleep(0.002)
        return True

    def _loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.wait(1.0)
            slicer = Slicer()
            while self._queue:
                self._busy = True
                self._send_one(*self._queue.popleft())
                slicer.tick()

    def _send_one(self, message: Message, owner_id: int, rooms: tuple[str, ...]) -> None:
        """Send one message (``_busy`` set by the caller, cleared here)."""
        try:
            self.send(message, owner_id, rooms)
        except Exception:  # one broken socket or adapter must not stop delivery
            log.exception("delivering %s failed", message.get("type"))
        finally:
            self._busy = False


#: Plain-WS deliveries written straight to the socket.
PLAIN_DIRECT = DeferredCount(MESSAGES_DELIVERED.labels("plain", "direct"))


def send_to_sid(sid: str, message: Message) -> None:
    """Send a Herald message straight to one of this process's Socket.IO connections, past
    the ledger and the queue (a greeting, a replay, a reply)."""
    server = extensions.socketio.server
    eio_sid = server.manager.eio_sid_from_sid(sid, "/")
    if eio_sid is None:
        return  # gone meanwhile
    # Through the frame writer, as the fan-out: written straight out when it can be, and a
    # client that stopped reading is cut off at the send-queue limit (a replay is long).
    server._send_eio_packet(eio_sid, _json_event("/", message["type"], message))


_EVENT_TYPE = str(sio_packet.EVENT)


def _json_event(namespace: str, event: str, payload: dict[str, Any]) -> Any:
    """The Engine.IO packet of a Socket.IO event whose payload is JSON (Herald's are, by
    contract: no binary scan, which costs about as much as the encoding itself).

    The text python-socketio's ``Packet.encode`` gives (type, namespace unless the main
    one, the JSON array), built here without its packet object."""
    head = _EVENT_TYPE if namespace == "/" else f"{_EVENT_TYPE}{namespace},"
    return eio_packet.Packet(eio_packet.MESSAGE, head + json_text.dumps([event, payload]))


def _rooms_list(room: Any) -> list[str]:
    if room is None:
        return []
    if isinstance(room, str):
        return [room]
    return [str(r) for r in room]


class _LocalFanOut:
    """One fan-out for this process's connections, Socket.IO sessions and plain sockets
    alike: each message is encoded once, and every connection of a job's room passes the
    ledger (held back during its replay, never a seq twice)."""

    def _fan_out(self, event: str, payload: dict[str, Any], namespace: str, room: Any, skip_sid: Any) -> None:
        job_message = payload.get("job_id") is not None
        rooms = _rooms_list(room)
        namespace_rooms = self.rooms.get(namespace)  # type: ignore[attr-defined]
        if namespace_rooms:
            # What ``get_participants`` gives (each room's sid -> eio_sid table, python-
            # socketio's own bidict), without its copy and generator per message.
            eio_sids: dict[str, str] = {}
            for name in rooms if room is not None else (None,):  # (every sid is in room None)
                members = namespace_rooms.get(name)
                if members:
                    eio_sids.update(members._fwdm)
            if skip_sid is not None:
                for sid in skip_sid if isinstance(skip_sid, list) else (skip_sid,):
                    eio_sids.pop(sid, None)
            due = ledger.admitted(eio_sids, payload) if job_message and eio_sids else eio_sids
            if due:  # encoded only for someone (most jobs have no watcher most of the time)
                frame = _json_event(namespace, event, payload)
                send = self.server._send_eio_packet  # type: ignore[attr-defined]
                send_many = getattr(send, "send_many", None)
                if send_many is not None:  # the FrameWriter
                    send_many([eio_sids[sid] for sid in due], frame)
                else:  # a stand-in (Flask-SocketIO's test client puts its own in)
                    for sid in due:
                        send(eio_sids[sid], frame)
        if namespace == "/":
            members = plain_rooms.members(rooms)
            for conn in ledger.admitted(members, payload) if job_message else members:
                conn.deliver(payload)


class _RoomsBySid:
    """Each sid's rooms, kept beside python-socketio's room table.

    python-socketio finds a leaving sid's rooms by testing every room of the namespace
    (and copying the table first): with a client room and a user room per connection,
    each disconnect costs O(connections), and 5,000 clients leaving at once held the event
    loop for seconds. With this index a disconnect touches only the sid's own rooms.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rooms_of: dict[tuple[str, str], set[Any]] = {}

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):  # type: ignore[no-untyped-def]
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid, namespace, room):  # type: ignore[no-untyped-def]
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                self._rooms_of.pop((namespace, sid), None)  # (a disconnect may have taken it)

    def basic_disconnect(self, sid, namespace, **kwargs):  # type: ignore[no-untyped-def]
        """``BaseManager.basic_disconnect`` with the sid's rooms from the index."""
        for room in list(self._rooms_of.pop((namespace, sid), ())):
            super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        self.callbacks.pop(sid, None)  # type: ignore[attr-defined]
        for pending in (self.pending_connect, self.pending_disconnect):  # type: ignore[attr-defined]
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid, namespace):  # type: ignore[no-untyped-def]
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]


class HeraldManager(_RoomsBySid, _LocalFanOut, socketio.Manager):
    """In-process client manager: the local fan-out for every JSON payload."""

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs):  # type: ignore[no-untyped-def]  # noqa: E501
        if kwargs.pop("ignore_queue", False):  # a direct reply or replay: past the ledger
            return super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to)
        if callback is None and not kwargs and isinstance(data, dict):
            self._fan_out(event, data, namespace or "/", to or room, skip_sid)
            return None
        return super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs)


class HeraldRedisManager(_RoomsBySid, _LocalFanOut, socketio.RedisManager):
    """Redis-backed client manager: every process delivers to its own connections.

    Redis pub/sub forgets what a disconnected listener missed, so an outage is handled
    here: its cause is logged once and its end once (not once per event), ``health``
    says ``degraded`` meanwhile, reconnection is retried every ``RETRY_MAX`` seconds at
    most, and before listening again every subscription of this process is held and
    ``on_recovered(held)`` replays what it missed from the database.
    """

    #: Longest pause between reconnection attempts (python-socketio's own grows to 60 s).
    RETRY_MAX = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Why listening or publishing last failed; None once it works again.
        self.listen_error: str | None = None
        self.publish_error: str | None = None
        #: Called with the held subscriptions (``Ledger.hold_all()``) once listening again.
        self.on_recovered: Callable[[list[tuple[Any, int, int]]], None] | None = None
        self._held: list[tuple[Any, int, int]] = []

    @property
    def outage(self) -> str | None:
        """Why the queue does not work now (for ``/health``), or None."""
        return self.listen_error or self.publish_error

    def _handle_emit(self, message):  # type: ignore[no-untyped-def]
        """An emit from the queue (this process's own too): JSON payloads take the local
        fan-out; callbacks and binary data python-socketio's own path."""
        data = message.get("data")
        payload = data[0] if isinstance(data, list) and len(data) == 1 else None
        if message.get("namespace") == NOTICE_NAMESPACE:
            handle_notice(str(message.get("event")), payload)
            return
        if message.get("callback") is None and not message.get("binary") and isinstance(payload, dict):
            self._fan_out(
                message.get("event", ""),
                payload,
                message.get("namespace") or "/",
                message.get("room"),
                message.get("skip_sid"),
            )
            return
        super()._handle_emit(message)

    def publish_notice(self, name: str, data: dict[str, Any]) -> None:
        """Send a notice to the other processes (they skip their own by ``host_id``)."""
        self._publish(
            {
                "method": "emit",
                "event": name,
                "data": [data],
                "binary": False,
                "namespace": NOTICE_NAMESPACE,
                "room": None,
                "skip_sid": None,
                "callback": None,
                "host_id": self.host_id,
            }
        )

    def _publish(self, data):  # type: ignore[no-untyped-def]
        try:
            if not self.connected:
                self._redis_connect()
            result = self.redis.publish(self.channel, self.json.dumps(data))
        except Exception as exc:
            self.connected = False
            if self.publish_error is None:
                log.error("cannot publish to the message queue (%s); other processes catch up when it is back", exc)
            self.publish_error = f"publish failed: {exc}"
            return None
        if self.publish_error is not None:
            log.warning("publishing to the message queue works again")
            self.publish_error = None
        return result

    def _redis_listen_with_retries(self):  # type: ignore[no-untyped-def]
        retry = 0.1
        while True:
            try:
                self._redis_connect()
                if self.listen_error is not None:
                    self._held += ledger.hold_all()  # before subscribing: nothing may slip past
                self.pubsub.subscribe(self.channel)
                if self.listen_error is not None:
                    log.warning("listening to the message queue again; catching up this process's subscriptions")
                    self.listen_error = None
                    held, self._held = self._held, []
                    if held and self.on_recovered is not None:
                        self.server.start_background_task(self.on_recovered, held)
                retry = 0.1
                yield from self.pubsub.listen()
            except Exception as exc:
                self.connected = False
                if self.listen_error is None:
                    log.error("cannot listen to the message queue (%s); retrying every %g s", exc, self.RETRY_MAX)
                self.listen_error = f"listening failed: {exc}"
                self.server.sleep(retry)
                retry = min(retry * 2, self.RETRY_MAX)


def make_client_manager(
    message_queue_url: str | None, channel: str = "herald", *, write_only: bool = False
) -> socketio.Manager:
    """The client manager for Flask-SocketIO: Redis-backed when a queue URL is set.

    ``write_only`` is for processes without clients (Celery workers): they publish through
    the queue and never listen.
    """
    if message_queue_url:
        if not message_queue_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("MESSAGE_QUEUE_URL must be a redis:// URL")
        return HeraldRedisManager(message_queue_url, channel=channel, write_only=write_only)
    if write_only:
        raise ValueError("a worker needs MESSAGE_QUEUE_URL to reach the web processes' clients")
    return HeraldManager()
