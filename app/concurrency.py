"""What differs between the async modes (eventlet, gevent, threading) in one place.

App code starts background work with ``socketio.start_background_task`` and sleeps with
``socketio.sleep``; these helpers cover the rest: running a blocking call in a real OS
thread without holding the event loop, and a wake-up signal that greenlets and threads
can both wait on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import greenlet

from .extensions import socketio

T = TypeVar("T")

log = logging.getLogger(__name__)

#: What a yield sleeps under gevent: ``sleep(0)`` there only runs greenlets already
#: runnable and never lets the loop poll sockets or fire timers while the yielder keeps
#: yielding (a 40,000-row XLSX import held pings ~0.5 s); a tiny real sleep passes through
#: the loop. Under eventlet ``sleep(0)`` is a timer like any other: the hub polls sockets
#: and fires every due timer before the yielder runs again, and a real sleep cost a busy
#: import a fifth of its speed.
GEVENT_YIELD_SLEEP = 0.0001


def yield_to_loop() -> None:
    """Let every other ready greenlet, timer and socket of the loop have a turn."""
    socketio.sleep(GEVENT_YIELD_SLEEP if socketio.async_mode == "gevent" else 0)


#: How long a background loop (delivery, the journal's hand-back) may run between yields.
LOOP_SLICE = 0.005


class Slicer:
    """Lets a long loop give the event loop a turn every ``LOOP_SLICE`` seconds."""

    def __init__(self) -> None:
        self._since = time.monotonic()

    def tick(self) -> None:
        """Call once per item: yields when the slice is used up (cheap otherwise)."""
        now = time.monotonic()
        if now - self._since >= LOOP_SLICE:
            yield_to_loop()
            self._since = time.monotonic()


def sleep_until(moment: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``moment``.

    Under eventlet every greenlet sleeping until the same moment shares one hub timer:
    jobs sleeping on a grid (``JobContext.sleep``) wake by the dozen at each grid step, and
    a timer each (its object, its place in the hub's heap, its cancel) was most of what a
    sleep cost the loop.
    """
    if socketio.async_mode != "eventlet":
        socketio.sleep(max(0.0, moment - time.monotonic()))
        return
    from eventlet import hubs

    hub = hubs.get_hub()
    sleeper = getattr(hub, "herald_shared_timers", None)
    if sleeper is None:
        sleeper = hub.herald_shared_timers = _SharedTimers(hub)
    sleeper.sleep_until(moment)


class _SharedTimers:
    """eventlet: the greenlets waiting for each moment, and one hub timer per moment."""

    def __init__(self, hub: Any) -> None:
        self._hub = hub
        #: moment -> tickets of the greenlets sleeping until then (emptied when one stops
        #: waiting otherwise: killed, or woken by something else).
        self._waiting: dict[float, list[list[Any]]] = {}

    def sleep_until(self, moment: float) -> None:
        tickets = self._waiting.get(moment)
        if tickets is None:
            tickets = self._waiting[moment] = []
            self._hub.schedule_call_global(max(0.0, moment - time.monotonic()), self._wake, moment)
        ticket = [greenlet.getcurrent()]
        tickets.append(ticket)
        try:
            self._hub.switch()
        finally:
            ticket[0] = None

    def _wake(self, moment: float) -> None:
        """From the hub: resume each greenlet still sleeping until ``moment``, in turn."""
        for ticket in self._waiting.pop(moment, ()):
            waiter = ticket[0]
            if waiter is None or waiter.dead:
                continue
            try:
                waiter.switch()
            except Exception:  # noqa: BLE001 - one sleeper's failure must not strand the rest
                log.exception("resuming a sleeping greenlet failed")


class DeadlineExceeded(Exception):
    """Raised inside a block that ran past its :func:`deadline`."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`DeadlineExceeded` inside the block once it has run ``seconds``, even
    while it waits on a socket: a peer that answers a byte at a time defeats any per-read
    timeout. Green modes only (eventlet, gevent); threading mode (in-process tests) sets
    no deadline."""
    mode = socketio.async_mode
    if mode == "eventlet":
        import eventlet

        timer = eventlet.Timeout(seconds, DeadlineExceeded)
        try:
            yield
        finally:
            timer.cancel()
    elif mode == "gevent":
        import gevent

        with gevent.Timeout(seconds, DeadlineExceeded):
            yield
    else:
        yield


def non_yielding_lock() -> Any:
    """A lock for short sections that never yield (dict, deque and heap updates): a real
    OS lock even under eventlet's patching, where ``threading.Lock`` is Python code (about
    1.5 µs an acquire and release; the delivery path takes several per message).

    Never make a green call that can switch (I/O, a sleep, a green lock) while holding it:
    another greenlet wanting it would block the whole process.
    """
    if eventlet_patched():
        from eventlet import patcher

        return patcher.original("threading").Lock()
    return threading.Lock()


def run_in_os_thread(call: Callable[[], T]) -> T:
    """Run ``call`` in a real OS thread; the calling greenlet waits, every other one runs.

    For work that would otherwise hold the event loop: library code that never yields
    (openpyxl opening a workbook, password hashing), SQLite commits under gevent (under
    eventlet they go to :func:`run_in_writer_thread`). The call must not touch green
    primitives (sockets, green locks): it runs outside the hub. In threading mode the
    caller already is a thread and runs it directly.
    """
    mode = socketio.async_mode
    if mode == "eventlet":
        from eventlet import tpool

        return tpool.execute(call)  # type: ignore[no-any-return]
    if mode == "gevent":
        import gevent

        return gevent.get_hub().threadpool.apply(call)  # type: ignore[no-any-return]
    return call()


def run_in_writer_thread(call: Callable[[], T]) -> T:
    """Run ``call`` in the process's one writer thread (SQLite writes, one at a time; they
    are serialized by the write lock anyway); the calling greenlet waits, every other one
    runs. Elsewhere than under eventlet, as :func:`run_in_os_thread`."""
    if socketio.async_mode != "eventlet":
        return run_in_os_thread(call)
    thread = _writer_thread.get("thread")
    if thread is None or thread.pid != os.getpid():  # (a forked child starts its own)
        thread = _writer_thread["thread"] = _WriterThread()
    return thread.run(call)


_writer_thread: dict[str, _WriterThread] = {}


class _WriterThread:
    """eventlet: one OS thread taking calls from the loop's greenlets, in order.

    ``tpool`` hands each call over through a queue with a condition variable, a green event
    and a socket its own greenlet re-registers with the hub per result: ~170 µs of CPU
    per call on a busy loop, when a group commit's own work is ~150 µs. Here a call is a
    deque append and a notify; its result comes back through a pipe the hub watches for
    good, and the hub wakes the caller directly: ~60 % less CPU per hand-over.
    """

    def __init__(self) -> None:
        from eventlet import hubs, patcher

        real_threading = patcher.original("threading")
        self._os = patcher.original("os")
        self.pid = os.getpid()
        self._lock = real_threading.Lock()
        self._work_waiting = real_threading.Condition(self._lock)
        self._calls: deque[tuple[Callable[[], Any], list[Any]]] = deque()
        self._results: deque[tuple[list[Any], tuple[bool, Any]]] = deque()
        self._read_end, self._write_end = self._os.pipe()
        self._os.set_blocking(self._read_end, False)
        hub = hubs.get_hub()
        self._hub = hub
        hub.add(hub.READ, self._read_end, self._hand_back, self._listener_lost, lambda: None)
        real_threading.Thread(target=self._serve, name="herald-writer", daemon=True).start()

    def run(self, call: Callable[[], T]) -> T:
        #: The waiting greenlet; emptied if it stops waiting (killed, a timeout): a result
        #: arriving later must not resume it wherever it is then.
        ticket = [greenlet.getcurrent()]
        with self._lock:
            self._calls.append((call, ticket))
            self._work_waiting.notify()
        try:
            ok, value = self._hub.switch()
        finally:
            ticket[0] = None
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _serve(self) -> None:
        """The thread: each call in turn, its outcome queued for the loop and the pipe poked."""
        while True:
            with self._lock:
                while not self._calls:
                    self._work_waiting.wait()
                call, ticket = self._calls.popleft()
            try:
                outcome = (True, call())
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to its caller
                outcome = (False, exc)
            self._results.append((ticket, outcome))
            self._os.write(self._write_end, b"!")

    def _hand_back(self, _fileno: int) -> None:
        """From the hub, when the pipe has data: resume each caller whose call ended."""
        try:
            self._os.read(self._read_end, 4096)
        except BlockingIOError:
            pass
        while self._results:
            ticket, outcome = self._results.popleft()
            self._hub.schedule_call_global(0, self._resume, ticket, outcome)

    @staticmethod
    def _resume(ticket: list[Any], outcome: tuple[bool, Any]) -> None:
        waiter = ticket[0]
        if waiter is not None and not waiter.dead:
            waiter.switch(outcome)

    @staticmethod
    def _listener_lost(*_args: Any) -> None:
        log.error("the writer thread's pipe was closed under the hub")


class Signal(Protocol):
    """A wake-up for one background loop: ``set`` from anywhere, ``wait`` in the loop
    (:func:`new_signal` builds the one for the async mode)."""

    def set(self) -> None:
        """Wake the loop; nearly free when a wake-up is pending already."""

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until ``set`` (or ``timeout``), then re-arm; False when it timed out."""


def new_signal() -> Signal:
    """The wake-up signal for this async mode; build it after monkey-patching."""
    if socketio.async_mode == "eventlet":
        return _HubSignal()
    return _EventSignal()


class _EventSignal:
    """gevent and threading: ``threading.Event`` is green after monkey-patching and a real
    event in threading mode."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        if not self._event.is_set():  # no lock taken: a green ``set`` is a notify in Python
            self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        woken = self._event.wait(timeout)
        self._event.clear()
        return woken


class _HubSignal:
    """eventlet: the waiting greenlet is switched to from the hub, nothing in between.

    A green ``threading.Event`` wakes its waiter through a condition variable, a semaphore
    and two hub timers; the outbox, the ticker and the journal each wake hundreds of
    times a second. Green threads only: ``set`` from an OS thread is not supported (nor
    is it with a green ``Event``).
    """

    def __init__(self) -> None:
        from eventlet import hubs

        self._hub = hubs.get_hub()
        self._flag = False
        #: The loop's greenlet while it waits, else None; and which wait that is.
        self._waiter: Any = None
        self._round = 0

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        if self._waiter is not None:
            self._hub.schedule_call_global(0, self._wake, self._round)

    def wait(self, timeout: float | None = None) -> bool:
        if not self._flag:
            self._round += 1
            self._waiter = greenlet.getcurrent()
            timer = None if timeout is None else self._hub.schedule_call_global(timeout, self._wake, self._round)
            try:
                self._hub.switch()
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        woken, self._flag = self._flag, False
        return woken

    def _wake(self, round_: int) -> None:
        """From the hub: resume the waiter if it still is in wait ``round_`` (a wake-up and
        a timeout may both be due; the second finds that wait over)."""
        waiter = self._waiter
        if waiter is not None and self._round == round_:
            self._waiter = None
            waiter.switch()


def eventlet_patched() -> bool:
    """Whether this process runs under eventlet's monkey-patching (``python wsgi.py``,
    gunicorn's eventlet worker)."""
    eventlet = sys.modules.get("eventlet")
    return eventlet is not None and bool(eventlet.patcher.is_monkey_patched("socket"))


def install_eventlet_postgres_wait() -> None:
    """psycopg2's wait callback for eventlet, which also tells the hub of recycled fds.

    eventlet's own callback (installed by ``monkey_patch``) waits on a new connection's
    socket at once. psycopg2 opens that socket in C, so eventlet never learns that its fd
    may be one just closed elsewhere while a greenlet still waited on it (a WebSocket
    closed under its reader): the hub then refuses the wait ("Second simultaneous read on
    fileno") and the request fails. A waiter found on the fd before ours can only be such a
    stale one: announcing the fd as reopened retires it, as eventlet does for its own sockets.
    """
    import eventlet.hubs
    import psycopg2
    from psycopg2 import extensions

    def wait(conn: Any, timeout: float = -1) -> None:
        while True:
            state = conn.poll()
            if state == extensions.POLL_OK:
                return
            fileno = conn.fileno()
            hub = eventlet.hubs.get_hub()
            if fileno in hub.listeners[hub.READ] or fileno in hub.listeners[hub.WRITE]:
                # Only this greenlet waits on this connection's socket: a waiter already
                # there belongs to a socket that had this fd before (closed under it).
                hub.mark_as_reopened(fileno)
            if state == extensions.POLL_READ:
                eventlet.hubs.trampoline(conn.fileno(), read=True)
            elif state == extensions.POLL_WRITE:
                eventlet.hubs.trampoline(conn.fileno(), write=True)
            else:
                raise psycopg2.OperationalError(f"bad result from poll: {state!r}")

    extensions.set_wait_callback(wait)
