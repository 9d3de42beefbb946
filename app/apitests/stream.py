"""The seed-003 event stream: a plain WebSocket server (``websockets``) for one CLI run.

Every event is sent as exactly ``{"type", "data"}`` — no greeting, no other types. The
run's events are kept, so a client that connects mid-run first gets every event so far,
in order, then the live ones. :meth:`EventStream.close` sends what remains, closes each
socket with 1000 and stops; it never waits for a client to connect.

The server runs its own asyncio loop in a daemon thread, so the (synchronous) engine
publishes with :meth:`publish` from the main thread; history and fan-out are only touched
on the loop thread, which keeps replay and live in one order.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

#: How long ``close`` lets connected clients drain before giving up on them.
DRAIN_TIMEOUT = 10.0


class EventStream:
    """Serves ``ws://host:port`` for the duration of a run."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.history: list[str] = []
        self._queues: set[asyncio.Queue[str | None]] = set()
        self._finished = False
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closing: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="herald-event-stream", daemon=True)

    # -- main-thread API ----------------------------------------------------------

    def start(self, timeout: float = 10.0) -> EventStream:
        """Bind and start serving; raises ``OSError`` when the port cannot be used."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise OSError(f"the event stream did not start on {self.host}:{self.port}")
        if self._error is not None:
            raise self._error
        return self

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        """Queue one ``{type, data}`` event for every client, present and future."""
        text = json.dumps({"type": type_, "data": data}, default=str)
        self._loop.call_soon_threadsafe(self._append, text)

    def close(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Send what remains, close every socket with 1000, stop the server."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._finish)
            self._thread.join(timeout + 5)

    # -- loop thread ----------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._closing = asyncio.Event()
        async with serve(self._serve_client, self.host, self.port, close_timeout=2, compression=None) as server:
            self._ready.set()
            await self._closing.wait()
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while self._queues and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            server.close()

    def _append(self, text: str) -> None:
        self.history.append(text)
        for queue in self._queues:
            queue.put_nowait(text)

    def _finish(self) -> None:
        self._finished = True
        for queue in self._queues:
            queue.put_nowait(None)
        if self._closing is not None:
            self._closing.set()

    async def _serve_client(self, connection: ServerConnection) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        for text in self.history:  # same loop tick as joining: nothing in between
            queue.put_nowait(text)
        if self._finished:
            queue.put_nowait(None)
        self._queues.add(queue)
        try:
            while (text := await queue.get()) is not None:
                await connection.send(text)
            await connection.close(1000, "run finished")
        except Exception:  # a client that went away only loses its own stream
            pass
        finally:
            self._queues.discard(queue)
