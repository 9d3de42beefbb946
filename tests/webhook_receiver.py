"""Tiny real servers on loopback for webhook tests: one that records deliveries, one that
accepts connections and never answers, one that answers a byte at a time."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One POST as the receiver saw it, and the status it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 200


class Receiver:
    """Answers each POST with the next scripted status (then 200) and records it.

    With ``hold_until``, the first POSTs get no answer until that many wait at once (or
    ``hold_for`` seconds pass): how many senders are in flight together shows in
    ``most_waiting``.
    """

    def __init__(self, statuses: list[int] | None = None, *, hold_until: int = 0, hold_for: float = 10.0) -> None:
        self.statuses = list(statuses or [])
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.hold_until = hold_until
        self.hold_for = hold_for
        self.gate_open = hold_until <= 0
        self.waiting = 0
        #: The most POSTs held unanswered at the same time.
        self.most_waiting = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.changed:
                    if not receiver.gate_open:
                        receiver.hold()
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.received.append(Received(self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hold(self) -> None:
        """Wait (holding ``changed``) until ``hold_until`` POSTs wait together or time runs out."""
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        self.changed.notify_all()
        self.changed.wait_for(lambda: self.gate_open or self.waiting >= self.hold_until, timeout=self.hold_for)
        self.gate_open = True
        self.changed.notify_all()
        self.waiting -= 1

    def posts(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class SilentReceiver:
    """Accepts every TCP connection and never answers, as a hung receiver does."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.held: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                self.held.append(conn)
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        """Nothing: the connection is only held."""

    def accepted(self) -> int:
        """Connections accepted so far (each one an attempt left without an answer)."""
        with self.lock:
            return len(self.held)

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)
        with self.lock:
            for conn in self.held:
                conn.close()


class TricklingReceiver(SilentReceiver):
    """Reads the request, then answers one byte of a status line every ``every`` seconds,
    for ever: each read is quick, the answer never complete."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        super().__init__()

    def _answer(self, conn: socket.socket) -> None:
        threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"." * 100_000:
                conn.sendall(bytes([byte]))
                time.sleep(self.every)
        except OSError:
            return  # the attempt gave up (or the test ended)
