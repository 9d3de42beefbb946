"""Engine.IO's WebSocket sessions under eventlet: one greenlet per idle connection.

python-engineio (4.15) gives every WebSocket connection three greenlets: the handler
reading the socket, a writer blocked on the connection's packet queue, and a ping task
sleeping out the ping interval — about 8 KB each while idle (eventlet 0.41, Python
3.11). Herald writes most frames straight to the socket (``frames.FrameWriter``), so the
writer only has work when a packet had to queue, and a ping needs a timer, not a
sleeping greenlet. Under eventlet, for uncompressed WebSockets, this module makes:

* the queue wake a *drain* greenlet when something is put on it; the drain writes what
  is queued and exits once the queue is empty (a slow reader keeps its drain, blocked in
  ``send``: that is its bounded backlog, and ``FrameWriter`` cuts it off past the limit);
* pings hub timers that start a short-lived greenlet only when a ping is due;
* the reading handler the only greenlet an idle connection keeps.

Order holds as in python-engineio: the drain takes packets in queue order under the
WebSocket's send lock, and ``FrameWriter`` writes directly only while the queue is
empty and that lock is free. Compressed WebSockets and long-polling keep python-engineio's
own path. The handler below follows ``engineio.socket.Socket._websocket_handler`` of the
pinned release (requirements.txt) line for line where it does not differ on purpose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import eventlet
from engineio import exceptions, packet
from engineio import socket as eio_socket
from eventlet import hubs
from eventlet.queue import Empty, Queue
from eventlet.websocket import RFC6455WebSocket

from .frames import apply_mask
from .hub_reader import hand_over


def install_eventlet_websocket(server: Any) -> None:
    """Under eventlet, give Socket.IO's Engine.IO sessions waking queues, drains and timer
    pings, and unmask incoming frames quickly."""
    eio = server.eio
    if eio.async_mode != "eventlet":
        return
    RFC6455WebSocket._apply_mask = staticmethod(apply_mask)
    eio.create_queue = _waking_queue_class()
    socket_class = eio_socket.Socket
    if getattr(socket_class, "herald_one_greenlet", False):
        return  # patched already (another app in this process)
    stock_handler = socket_class._websocket_handler
    stock_schedule_ping = socket_class.schedule_ping

    def websocket_handler(self: Any, ws: Any) -> Any:
        lean = (
            isinstance(ws, RFC6455WebSocket)
            and ws._get_permessage_deflate_enc() is None
            and hasattr(self.queue, "on_put")
        )
        if not lean:  # compressed frames differ per connection: the stock path
            return stock_handler(self, ws)
        return _serve(self, ws)

    def schedule_ping(self: Any) -> None:
        if not hasattr(self.queue, "on_put"):
            return stock_schedule_ping(self)
        # Only schedule a new ping if the previous ping's wait cycle completed (as stock).
        if self.last_ping:
            self.last_ping = None
            _schedule(self.server.ping_interval, _ping, self)

    socket_class._websocket_handler = websocket_handler
    socket_class.schedule_ping = schedule_ping
    socket_class.herald_one_greenlet = True


def _waking_queue_class() -> type:
    class WakingQueue(Queue):  # type: ignore[misc]
        """An Engine.IO packet queue that tells its connection's drain when it has work."""

        on_put: Callable[[], None] | None = None

        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            super().put(item, block, timeout)
            if self.on_put is not None:
                self.on_put()

    return WakingQueue


def _schedule(seconds: float, function: Callable[..., None], *args: Any) -> None:
    """Run ``function`` in a greenlet of its own after ``seconds``: a hub timer until then.
    (Timer callbacks run in the hub, which must never block: a ping may close the session
    and run its disconnect handlers.)"""
    hubs.get_hub().schedule_call_global(seconds, eventlet.spawn_n, function, *args)


def _ping(socket: Any) -> None:
    """python-engineio's ``_send_ping`` without its sleep (the timer did the waiting)."""
    if not socket.closing and not socket.closed:
        socket.last_ping = time.time()
        socket.send(packet.Packet(packet.PING))


class _Drain:
    """Writes a connection's queued packets from a greenlet that lives only while there
    are any (python-engineio's writer, minus the waiting)."""

    __slots__ = ("socket", "ws", "greenlet", "finished", "on_close")

    def __init__(self, socket: Any, ws: Any, *, on_close: Callable[[], bool] | None = None) -> None:
        self.socket = socket
        self.ws = ws
        self.greenlet: Any = None
        self.finished = False
        #: Called just before the drain closes the WebSocket (``hub_reader`` stops watching
        #: it); when it returns True the socket is closed by whoever it belongs to.
        self.on_close = on_close

    def wake(self) -> None:
        if self.greenlet is None and not self.finished:
            self.greenlet = eventlet.spawn(self._run)

    def run_here(self) -> None:
        """Write what is queued from the calling greenlet (one that ends next anyway);
        what is put meanwhile is written by this run too."""
        if self.greenlet is None and not self.finished:
            self.greenlet = eventlet.getcurrent()
            self._run()

    def wait(self) -> None:
        greenlet = self.greenlet
        if greenlet is not None and greenlet is not eventlet.getcurrent():
            greenlet.wait()

    def _run(self) -> None:
        queue = self.socket.queue
        try:
            while True:
                try:
                    pkt = queue.get(block=False)
                except Empty:
                    return
                queue.task_done()
                if pkt is None:  # the session is closing
                    self._finish()
                    return
                try:
                    self.ws.send(pkt.encode())
                except Exception:  # as python-engineio's writer: any failure ends the session
                    # A frame may have been cut short: no close frame may follow it.
                    try:
                        self.ws.socket.shutdown(2)  # SHUT_RDWR
                    except OSError:
                        pass
                    self._finish()
                    return
        finally:
            self.greenlet = None

    def _finish(self) -> None:
        self.finished = True
        if self.on_close is not None and self.on_close():
            return  # the hub reader closes it
        self.ws.close()


def _serve(self: Any, ws: Any) -> list[Any]:
    """``engineio.socket.Socket._websocket_handler`` with a drain instead of a writer."""

    def websocket_wait() -> Any:
        data = ws.wait()
        if data and len(data) > self.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    ws.socket.settimeout(self.server.ping_interval + self.server.ping_timeout)
    if self.connected:
        # The socket was already connected, so this is an upgrade.
        self.upgrading = True  # hold packet sends during the upgrade
        pkt = websocket_wait()
        decoded_pkt = packet.Packet(encoded_packet=pkt)
        if decoded_pkt.packet_type != packet.PING or decoded_pkt.data != "probe":
            self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
            self.upgrading = False
            return []
        ws.send(packet.Packet(packet.PONG, data="probe").encode())
        self.queue.put(packet.Packet(packet.NOOP))  # end poll
        pkt = websocket_wait()
        decoded_pkt = packet.Packet(encoded_packet=pkt)
        if decoded_pkt.packet_type != packet.UPGRADE:
            self.upgraded = False
            self.server.logger.info(
                "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.", self.sid, pkt
            )
            self.upgrading = False
            return []
        self.upgraded = True
        self.upgrading = False
    else:
        self.connected = True
        self.upgraded = True

    if hand_over(self, ws, _Drain):  # served from the hub from now on: the request ends here
        return []
    drain = _Drain(self, ws)
    self.herald_ws = ws  # frames.FrameWriter writes straight to it
    self.queue.on_put = drain.wake
    drain.wake()  # what was queued before (the OPEN packet, a poll's leftovers)
    try:
        while True:
            try:
                p = websocket_wait()
            except Exception as e:
                if not self.closed:
                    self.server.logger.info('%s: Unexpected error "%s", closing connection', self.sid, str(e))
                break
            if p is None:  # connection closed by client
                break
            pkt = packet.Packet(encoded_packet=p)
            try:
                self.receive(pkt)
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                self.server.logger.info("Receive error -- socket is closed")
                break
            except Exception:
                self.server.logger.exception("Unknown receive error")
                break
    finally:
        self.queue.put(None)  # the drain closes the WebSocket
        drain.wait()
        self.queue.on_put = None
        self.herald_ws = None
    self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
    return []
