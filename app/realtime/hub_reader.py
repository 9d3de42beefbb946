"""Idle Socket.IO WebSockets without a greenlet: the event hub watches the socket.

After ``eventlet_websocket`` an idle connection still kept one greenlet: the WSGI request
blocked in ``ws.wait()`` some thirty frames deep (eventlet.wsgi, Flask, the middlewares,
Engine.IO, the WebSocket handler), with eventlet's HTTP protocol object, its buffered
files and the request's environ hanging off it — most of the ~50 KB an idle connection
cost. Here, once the WebSocket handshake (and an upgrade's probe) is done, the request
*hands the socket over* and returns:

* the request's server lets go of the socket (``upgrade.UpgradeFirstProtocol``: neither
  shutdown nor close once the request returns); any other server (gunicorn, eventlet's
  own protocol) gets it detached (``socket.detach``) and the connection wrapped anew, so
  its ``shutdown_safe`` + ``close`` act on an empty socket object. The request's
  WebSocket object counts as closed (``WebSocketWSGI`` sends no closing frame when its
  handler returns); what was queued before (the OPEN packet) is written by the request's
  greenlet on its way out;
* the hub watches the descriptor (``hub.add(READ, …)``): nothing runs while the client is
  quiet. A readable socket spawns a short greenlet that reads what is there without
  blocking, handles every whole frame (partial frames stay buffered), and re-arms the
  hub. The listener is off while that greenlet runs, so a handler that blocks neither
  loses order nor makes the hub spin on a readable socket;
* the read timeout Engine.IO sets (``ping_interval + ping_timeout`` without a byte) is a
  hub timer that checks when the last byte came;
* writes are unchanged: ``frames.FrameWriter`` writes frames straight to the socket and
  the connection's drain (``eventlet_websocket._Drain``) writes what had to queue; the
  drain tells the reader before it closes the socket, so the hub never watches a closed
  descriptor;
* the connection keeps a slot of the server's connection pool (``MAX_CONNECTIONS``, or
  gunicorn's ``worker_connections`` through ``serving.share_gunicorn_eventlet_pool``) until
  it closes. Without a registered pool and when the pool is full, connections keep the
  greenlet path (``eventlet_websocket``).

Frames are read as eventlet's ``RFC6455WebSocket`` reads them, with the same checks and
close codes (client frames masked, no reserved bits, control frames final and short, the
frame length limit, text frames UTF-8); compressed WebSockets never come here.
"""

from __future__ import annotations

import io
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

import eventlet
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from eventlet import hubs, patcher
from eventlet.greenio import GreenSocket
from eventlet.websocket import VALID_CLOSE_STATUS

from ..logs import AFTER_SOCKET_CLOSE
from .frames import apply_mask

log = logging.getLogger(__name__)

#: How much one read takes at most (into one shared buffer: green threads never read at once).
READ_SIZE = 64 * 1024
_READ_BUFFER = bytearray(READ_SIZE)
_READ_VIEW = memoryview(_READ_BUFFER)

#: Seconds a server-side close waits for the client to close its side (``HubReader._linger``).
LINGER = 2.0

#: What a handed-over connection's stored environ keeps as its (empty) request body.
_NO_INPUT = io.BytesIO(b"")

#: Environ entries that tie a handed-over connection to its finished request: eventlet's
#: ``set_idle`` closure holds the HTTP protocol object (buffered files, headers), the input
#: objects hold the old socket. python-socketio keeps this environ for the session's life.
_REQUEST_ONLY_KEYS = (
    "eventlet.input",
    "eventlet.set_idle",
    "eventlet.posthooks",
    "gunicorn.socket",
    "headers_raw",
)

#: Environ key of an empty list, put there by a server that can let go of the request's
#: socket (``upgrade.serve_upgrade``): ``hand_over`` appends to it when it took the socket,
#: which the server then neither shuts down nor closes. Without it the socket is detached.
LET_GO = "herald.socket_let_go"

_slots: Any = None
#: The connections the hub serves now (so that stopping the server can end them).
_open: set[HubReader] = set()


def register_connection_slots(semaphore: Any) -> None:
    """Let WebSocket connections leave their greenlet, each holding one of ``semaphore``'s
    slots (the WSGI server's pool) until it closes; ``None`` turns hand-over off."""
    global _slots
    _slots = semaphore


def close_all(timeout: float = 5.0) -> int:
    """End every connection the hub serves, as eventlet.wsgi ends its idle ones when it
    stops (their sessions' disconnect handlers run); returns how many were still open."""
    readers = list(_open)
    for reader in readers:
        try:
            reader.raw.shutdown(2)  # SHUT_RDWR: the hub reports it readable, its reader ends it
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while _open and time.monotonic() < deadline:
        eventlet.sleep(0.02)
    return len(readers)


def hand_over(eio_socket: Any, ws: Any, drain_class: type) -> bool:
    """Serve ``ws`` (handshake done) from the hub; False when it must stay in its greenlet."""
    slots = _slots
    if slots is None or type(getattr(ws.socket, "fd", None)) is not RAW_SOCKET:
        return False  # not serving with slots, or not a plain socket (TLS keeps its greenlet)
    if not slots.acquire(blocking=False):
        return False
    environ = ws.environ
    let_go = environ.pop(LET_GO, None) if environ is not None else None
    try:
        reader = HubReader(eio_socket, _take_over(ws, eio_socket, detach=let_go is None), drain_class, slots)
    except BaseException:
        slots.release()
        raise
    if let_go is not None:
        let_go.append(True)  # the server leaves the socket alone once the request returns
    # eventlet's WebSocketWSGI sends a closing frame when the request's handler returns:
    # the handed-over copy is open, the request's object counts as closed.
    ws.websocket_closed = True
    if environ is not None:
        hooks = environ.pop(AFTER_SOCKET_CLOSE, None)
        if hooks is not None:
            hooks.append(reader.after_close)
        for key in _REQUEST_ONLY_KEYS:
            environ.pop(key, None)
        environ["wsgi.input"] = _NO_INPUT
    reader.start()
    return True


def _take_over(ws: Any, eio_socket: Any, *, detach: bool) -> Any:
    """A copy of ``ws`` that the request's objects do not reach. With ``detach`` it is on
    a new socket object for the same connection and ``ws`` keeps an empty (detached)
    socket, so whatever the request's server does to it when the request ends — shutdown,
    close — reaches nobody; without, the server lets go of the socket by itself (``LET_GO``)."""
    green = ws.socket
    if detach:
        # (Family, type and protocol are read from the descriptor: the Python attributes
        # convert each to an enum.)
        green = GreenSocket(RAW_SOCKET(fileno=ws.socket.fd.detach()))
    server = eio_socket.server
    green.settimeout(server.ping_interval + server.ping_timeout)  # sends, as Engine.IO sets it
    taken = object.__new__(type(ws))
    taken.__dict__.update(ws.__dict__)
    taken.socket = green
    taken._sendlock = type(ws._sendlock)()  # its own: the old object stays with the request
    taken.environ = None
    taken.iterator = None  # frames are read here, not by eventlet's generator
    taken._msgs = None  # nor by its hixie-76 parser (a deque each)
    return taken


#: The unpatched socket class: a plain socket's ``fd`` (TLS sockets keep their greenlet).
RAW_SOCKET: type = patcher.original("socket").socket


class _Failed(Exception):
    """A frame the protocol forbids: the connection is closed with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class HubReader:
    """One handed-over WebSocket: read by short greenlets the hub spawns when it is readable."""

    __slots__ = (
        "eio",
        "ws",
        "raw",
        "fileno",
        "hub",
        "drain",
        "slots",
        "listener",
        "timer",
        "timeout",
        "last_read",
        "buffer",
        "fragments",
        "fragment_opcode",
        "done",
        "closing_hooks",
        "max_frame",
        "max_message",
    )

    def __init__(self, eio_socket: Any, ws: Any, drain_class: type, slots: Any) -> None:
        server = eio_socket.server
        self.eio = eio_socket
        self.ws = ws
        self.raw = ws.socket.fd
        self.fileno = self.raw.fileno()
        self.hub = hubs.get_hub()
        self.drain = drain_class(eio_socket, ws, on_close=self._drain_closing)
        self.slots = slots
        self.listener: Any = None
        self.timer: Any = None
        self.timeout = float(server.ping_interval + server.ping_timeout)
        self.last_read = time.monotonic()
        self.buffer: bytearray | None = None
        self.fragments: list[bytes] | None = None
        self.fragment_opcode = 0
        self.done = False
        #: Run once closed (None: none yet; ``()`` once closed).
        self.closing_hooks: list[Callable[[], None]] | tuple[()] | None = None
        self.max_frame = int(getattr(ws, "max_frame_length", server.max_http_buffer_size))
        self.max_message = int(server.max_http_buffer_size)

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Take the connection's writes (direct frames, the drain) and start watching it."""
        eio = self.eio
        eio.herald_ws = self.ws  # frames.FrameWriter writes straight to it
        eio.queue.on_put = self.drain.wake
        _open.add(self)
        # What was queued before (the OPEN packet, a poll's leftovers), written by the
        # request's greenlet, which ends next: no greenlet is spawned for it.
        self.drain.run_here()
        if self.done:  # the session closed meanwhile (the drain told ``_drain_closing``)
            return
        self._arm()
        self.timer = self.hub.schedule_call_global(self.timeout, self._check_quiet)

    def after_close(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` once the connection has closed (the request log's line)."""
        if self.closing_hooks == ():  # closed already
            hook()
            return
        if self.closing_hooks is None:
            self.closing_hooks = []
        self.closing_hooks.append(hook)

    def _arm(self) -> None:
        hub = self.hub
        listener = hub.add(hub.READ, self.fileno, self._readable, self._thrown, self._obsoleted)
        # The listener keeps the greenlet that armed it (to throw into it if the descriptor
        # is reused): a finished request's or reader's, with its links; the hub's costs nothing.
        listener.greenlet = hub.greenlet
        self.listener = listener

    def _disarm(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            self.hub.remove(listener)
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    # -- in the hub: never block, never switch -------------------------------------------

    def _readable(self, _fileno: int) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            self.hub.remove(listener)
        if not self.done:
            _spawn(self._read)

    def _check_quiet(self) -> None:
        """Engine.IO's read timeout: nothing received for ``ping_interval + ping_timeout``."""
        self.timer = None
        if self.done:
            return
        left = self.last_read + self.timeout - time.monotonic()
        if left > 0 or self.listener is None:  # bytes came, or a read is being handled
            self.timer = self.hub.schedule_call_global(max(left, 1.0), self._check_quiet)
            return
        self._disarm()
        _spawn(self._finish, TimeoutError("timed out"))

    def _thrown(self, _exc: BaseException) -> None:
        """The hub's way to say the descriptor was reused (closed behind our back)."""
        self._obsoleted()

    def _obsoleted(self) -> None:
        if not self.done:
            self.done = True
            self.listener = None
            timer, self.timer = self.timer, None
            if timer is not None:
                timer.cancel()
            _spawn(self._after_close)  # the descriptor is someone else's now: do not touch it

    # -- in a short greenlet ---------------------------------------------------------------

    def _read(self) -> None:
        """Read what the socket has, handle whole frames, then watch the socket again."""
        try:
            while not self.done:
                try:
                    count = self.raw.recv_into(_READ_BUFFER, READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                if not count:  # the client closed its side
                    self._finish(None)
                    return
                self.last_read = time.monotonic()
                if self.buffer is None:
                    self.buffer = bytearray(_READ_VIEW[:count])
                else:
                    self.buffer += _READ_VIEW[:count]
                if not self._frames():
                    return
                if count < READ_SIZE:
                    break  # most likely all there was: let the hub say when there is more
        except Exception as exc:  # an OSError on the socket, or a bug: end as the stock loop does
            self._finish(exc)
            return
        if not self.done:
            self._arm()

    def _frames(self) -> bool:
        """Handle every whole frame in the buffer; False once the connection has ended."""
        buffer = self.buffer
        assert buffer is not None
        size = len(buffer)
        at = 0
        try:
            while size - at >= 2:
                first, second = buffer[at], buffer[at + 1]
                final, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
                header = 2
                if length == 126:
                    header = 4
                    if size - at < header:
                        break
                    length = struct.unpack_from("!H", buffer, at + 2)[0]
                elif length == 127:
                    header = 10
                    if size - at < header:
                        break
                    length = struct.unpack_from("!Q", buffer, at + 2)[0]
                self._check_header(first, second, opcode, final, length)
                header += 4  # the mask (checked above)
                end = at + header + length
                if size < end:
                    break  # a partial frame: wait for the rest
                payload = apply_mask(bytes(buffer[at + header : end]), buffer[at + header - 4 : at + header])
                at = end
                if opcode & 8:
                    if not self._control(opcode, payload):
                        return False
                    continue
                if opcode:
                    self.fragment_opcode = opcode
                    self.fragments = [payload]
                else:
                    assert self.fragments is not None
                    self.fragments.append(payload)
                if not final:
                    if sum(map(len, self.fragments)) > self.max_message:
                        raise ValueError("packet is too large")
                    continue
                data: bytes | str = b"".join(self.fragments) if len(self.fragments) > 1 else payload
                self.fragments = None
                if self.fragment_opcode == 1:
                    try:
                        data = bytes(data).decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise _Failed(1007, "Text data must be valid utf-8") from exc
                if not self._message(data):
                    return False
        except _Failed as failed:
            self._finish(None, close_data=(failed.code, failed.message))
            return False
        if self.done:
            return False
        if at >= size:
            self.buffer = None
        elif at:
            del buffer[:at]
        return True

    def _check_header(self, first: int, second: int, opcode: int, final: int, length: int) -> None:
        """eventlet's ``RFC6455WebSocket._recv_frame`` checks, with its close codes."""
        if first & 0x70:
            raise _Failed(1002, "RSV1, RSV2, RSV3: MUST be 0 unless an extension is negotiated")
        if opcode not in (0, 1, 2, 8, 9, 0xA):
            raise _Failed(1002, "Unknown opcode received.")
        if not second & 0x80:
            raise _Failed(1002, "A client MUST mask all frames that it sends to the server")
        if opcode & 8:
            if not final:
                raise _Failed(1002, "Control frames must not be fragmented.")
            if length > 125:
                raise _Failed(1002, "All control frames MUST have a payload length of 125 bytes or less")
        elif opcode and self.fragments is not None:
            raise _Failed(1002, "Received a non-continuation opcode within fragmented message.")
        elif not opcode and self.fragments is None:
            raise _Failed(1002, "Received continuation opcode with no previous fragments received.")
        if length > self.max_frame:
            raise _Failed(1009, f"Incoming frame of {length} bytes is above length limit of {self.max_frame} bytes.")

    def _control(self, opcode: int, payload: bytes) -> bool:
        """Close, ping and pong frames, as eventlet answers them."""
        if opcode == 8:
            status = 1000
            if len(payload) == 1:
                status = 1002
            elif payload:
                status = struct.unpack_from("!H", payload)[0]
                if status not in VALID_CLOSE_STATUS:
                    raise _Failed(1002, "Unexpected close status code.")
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _Failed(1002, "Close message data should be valid UTF-8.") from exc
            self._finish(None, close_data=(status, ""))
            return False
        if opcode == 9:
            self.ws.send(payload, control_code=0xA)
        return True

    def _message(self, data: bytes | str) -> bool:
        """``engineio.socket.Socket._websocket_handler``'s loop body for one message."""
        eio = self.eio
        if data and len(data) > self.max_message:
            self._finish(ValueError("packet is too large"))
            return False
        try:
            pkt = eio_packet.Packet(encoded_packet=data)
            eio.receive(pkt)
        except eio_exceptions.UnknownPacketError:
            pass
        except eio_exceptions.SocketIsClosedError:
            eio.server.logger.info("Receive error -- socket is closed")
            self._finish(None)
            return False
        except Exception:
            eio.server.logger.exception("Unknown receive error")
            self._finish(None)
            return False
        return not self.done

    def _finish(self, error: BaseException | None, close_data: tuple[int, str] | None = None) -> None:
        """The end of the stock handler: the drain closes the WebSocket, then the session."""
        if self.done:
            return
        self.done = True
        self._disarm()
        eio = self.eio
        if error is not None and not eio.closed:
            eio.server.logger.info('%s: Unexpected error "%s", closing connection', eio.sid, str(error))
        if close_data is not None:  # as eventlet answers a close or a protocol error
            self.ws._send_closing_frame(ignore_send_errors=True, close_data=close_data)
        eio.queue.put(None)  # the drain closes the WebSocket
        self.drain.wait()
        self._after_close()

    def _drain_closing(self) -> bool:
        """The drain is about to close the socket (the session closed, or a send failed):
        True when this reader closes it instead (a lingering close)."""
        if self.done:
            return False  # the reader ended it (the client left or broke the protocol)
        self.done = True
        self._disarm()  # the hub must not watch it any more
        _spawn(self._end_session)
        _spawn(self._linger)
        return True

    def _linger(self) -> None:
        """Close the way RFC 6455 asks of a server: the close frame, our side shut, then
        read (and drop) until the client closes too, for at most ``LINGER`` seconds.

        Closing a socket with unread bytes makes the kernel send a reset, and a reset can
        make the client drop what it had not read yet — the close frame, and the messages
        just before it (the ``rate_limited`` error of a client flooding the server)."""
        ws = self.ws
        ws._send_closing_frame(ignore_send_errors=True)
        try:
            ws.socket.shutdown(1)  # SHUT_WR
            with eventlet.Timeout(LINGER, False):
                while ws.socket.recv(READ_SIZE):
                    pass
        except OSError:
            pass
        finally:
            ws.socket.close()
            self._release()

    def _after_close(self) -> None:
        """The socket is closed: end the session (as the stock handler does on its way
        out), then give back the slot."""
        self._end_session()
        self._release()

    def _end_session(self) -> None:
        eio = self.eio
        eio.queue.on_put = None
        eio.herald_ws = None
        eio.close(wait=False, abort=True, reason=eio.server.reason.TRANSPORT_CLOSE)
        if eio.closed:
            eio.server.sockets.pop(eio.sid, None)  # as Engine.IO does when its handler returns
        self.buffer = None
        self.fragments = None

    def _release(self) -> None:
        _open.discard(self)
        slots, self.slots = self.slots, None
        if slots is not None:
            slots.release()
        hooks, self.closing_hooks = self.closing_hooks, ()
        for hook in hooks or ():
            try:
                hook()
            except Exception:
                log.exception("a hook after a WebSocket closed failed")


_spawn = eventlet.spawn_n
