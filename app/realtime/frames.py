"""Frames straight to the socket: Socket.IO deliveries without a writer greenlet each.

python-engineio sends every packet by putting it on the connection's queue and waking
that connection's writer greenlet, which then writes it: a queue put, a wake-up and a
greenlet switch per delivery (about 40 % of a fan-out's CPU). Under eventlet this module
writes the WebSocket frame itself instead, straight to the connection's socket, whenever
that is safe and cannot block:

* the connection is on the WebSocket transport (upgraded, not upgrading) and without
  compression, so the frame bytes are the same for every recipient (built once);
* nothing waits in its queue and its drain is not mid-frame (the socket's send lock is
  free): nothing older can be overtaken;
* the kernel takes the frame without blocking. If it takes part, the rest goes out from
  a greenlet that keeps the send lock until done (the drain waits for it, so order
  holds); if it takes nothing (a slow reader) the packet goes the usual way, through the
  queue and the connection's drain (``eventlet_websocket``) — only slow readers cost a
  switch.

Everything else (long-polling, compression, gevent's or threading's sockets) takes
python-engineio's own path unchanged; there the writer only counts deliveries and keeps
the queue limit.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from ..metrics import CONNECTIONS_DROPPED, MESSAGES_DELIVERED, MESSAGES_DROPPED, DeferredCount

log = logging.getLogger(__name__)

#: Deliveries written straight to the socket, and those that went through the queue.
_DIRECT = DeferredCount(MESSAGES_DELIVERED.labels("socketio", "direct"))
_QUEUED = DeferredCount(MESSAGES_DELIVERED.labels("socketio", "queued"))


def send_without_blocking(raw: Any, data: bytes) -> int:
    """How much of ``data`` a non-blocking socket takes at once: 0 when none (a full
    buffer) or the socket is broken — the connection's usual write path then finds out."""
    try:
        return int(raw.send(data))
    except OSError:  # BlockingIOError, InterruptedError, a reset ...
        return 0


def text_frame(payload: str) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2), as a server sends it."""
    data = payload.encode("utf-8")
    length = len(data)
    if length <= 125:
        header = struct.pack("!BB", 0x81, length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + data


class FrameWriter:
    """Replaces ``socketio.Server._send_eio_packet``: a direct write when safe, else the queue."""

    def __init__(self, server: Any, *, direct: bool = True, queue_limit: int = 0) -> None:
        #: Packets queued for one connection before it is cut off (0: unbounded).
        self.queue_limit = queue_limit
        #: False outside eventlet: every packet takes the queue (and is counted).
        self.direct_enabled = direct
        self.eio = server.eio
        self._queued_send = server.eio.send_packet
        self._spawn = server.eio.start_background_task
        #: The last packet framed and its frame: a fan-out sends one packet object to all.
        self._last_packet: Any = None
        self._last_frame = b""

    def __call__(self, eio_sid: str, eio_packet: Any) -> None:
        self.send_many((eio_sid,), eio_packet)

    def send_many(self, eio_sids: Iterable[str], eio_packet: Any) -> None:
        """One packet to each of ``eio_sids``: a fan-out's inner loop, the checks inline."""
        if not self.direct_enabled or eio_packet.binary:
            for eio_sid in eio_sids:
                self._queue(eio_sid, eio_packet)
            return
        sockets = self.eio.sockets
        frame = b""
        direct = 0
        for eio_sid in eio_sids:
            socket = sockets.get(eio_sid)
            ws = getattr(socket, "herald_ws", None)
            # No green call between this check and the write below can yield, so a free
            # send lock stays free: it is only taken when a partial frame must be finished.
            if (
                ws is None
                or not socket.upgraded
                or socket.upgrading
                or socket.closing
                or socket.closed
                or socket.queue.queue  # (eventlet's LightQueue: its deque, no qsize() call)
                or ws._sendlock.counter < 1
            ):
                self._queue(eio_sid, eio_packet)
                continue
            if not frame:
                frame = self._frame(eio_packet)
            sent = send_without_blocking(ws.socket.fd, frame)
            if sent == 0:
                self._queue(eio_sid, eio_packet)
                continue
            direct += 1
            if sent < len(frame):
                ws._sendlock.acquire()  # free (checked above): the writer waits for the rest
                self._spawn(self._finish, ws, frame[sent:])
        _DIRECT.pending += direct

    def _queue(self, eio_sid: str, eio_packet: Any) -> None:
        if self.queue_limit:
            socket = self.eio.sockets.get(eio_sid)
            if socket is not None and socket.queue.qsize() >= self.queue_limit:
                self._cut_off(eio_sid, socket)
                return
        _QUEUED.pending += 1
        self._queued_send(eio_sid, eio_packet)

    def _cut_off(self, eio_sid: str, socket: Any) -> None:
        """A client that stopped reading: its queue is full. Close it (nothing more is
        queued for it), so its backlog cannot grow without bound."""
        if getattr(socket, "herald_cut_off", False):
            return
        socket.herald_cut_off = True
        log.info(
            "closing Socket.IO connection %s: it stopped reading (%d packets queued)", eio_sid, socket.queue.qsize()
        )
        CONNECTIONS_DROPPED.labels("socketio").inc()
        MESSAGES_DROPPED.labels("socketio").inc(socket.queue.qsize())
        ws = getattr(socket, "herald_ws", None)
        raw = getattr(getattr(ws, "socket", None), "fd", None)
        if raw is not None:
            try:
                raw.shutdown(2)  # SHUT_RDWR: wakes its writer (blocked on a full buffer) and reader
            except OSError:
                pass
        self._spawn(socket.close, False, True)  # (wait=False, abort=True): forget it now

    def _frame(self, eio_packet: Any) -> bytes:
        if eio_packet is not self._last_packet:
            self._last_packet = eio_packet
            self._last_frame = text_frame(eio_packet.encode())
        return self._last_frame

    @staticmethod
    def _finish(ws: Any, rest: bytes) -> None:
        """The rest of a frame the kernel took only part of, before anything else."""
        try:
            ws.socket.sendall(rest)
        except OSError:
            # A frame cut short (the connection's timeout on a reader that stopped): the
            # stream must end here, or the next frame would reach the client as garbage.
            try:
                ws.socket.shutdown(2)  # SHUT_RDWR; its reader then ends the session
            except OSError:
                pass
        finally:
            ws._sendlock.release()


def apply_mask(data: bytes, mask: Sequence[int], length: int | None = None, offset: int = 0) -> bytes:
    """XOR the first ``length`` bytes of ``data`` with the 4-byte WebSocket ``mask``, ``offset``
    bytes into the frame, as one big-integer operation.

    eventlet's own unmasks a byte at a time (~0.45 µs a byte): one client frame just under
    Engine.IO's 1 MiB buffer held the event loop for half a second, every 64 KiB event for
    30 ms."""
    if length is None:
        length = len(data)
    if length <= 0:
        return b""
    key = bytes(mask[(offset + i) % 4] for i in range(4)) * (length // 4 + 1)
    masked = int.from_bytes(data[:length], "little") ^ int.from_bytes(key[:length], "little")
    return masked.to_bytes(length, "little")


def install_frame_writer(server: Any, *, queue_limit: int = 0) -> FrameWriter:
    """Under eventlet, let Socket.IO deliveries write frames straight to the sockets (the
    connections ``eventlet_websocket`` serves); in other modes the writer only counts them
    and enforces the queue limit."""
    writer = FrameWriter(server, direct=server.eio.async_mode == "eventlet", queue_limit=queue_limit)
    server._send_eio_packet = writer
    return writer
