"""What differs between the async modes (eventlet, gevent, threading) in one place.

App code starts background work with ``socketio.start_background_task`` and sleeps with
``socketio.sleep``; these helpers cover the rest: running a blocking call in a real OS
thread without holding the event loop, and a wake-up signal that greenlets and threads
can both wait on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from .extensions import socketio

T = TypeVar("T")


def run_in_os_thread(call: Callable[[], T]) -> T:
    """Run ``call`` in a real OS thread; the calling greenlet waits, every other one runs.

    For work that would otherwise hold the event loop: SQLite commits (disk), library code
    that never yields (openpyxl opening a workbook). The call must not touch green
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


class Signal:
    """A wake-up for one background loop: ``set`` from anywhere, ``wait`` in the loop.

    ``threading.Event`` is green after monkey-patching (eventlet, gevent) and a real event
    in threading mode, so one class serves every mode.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Wake the loop (cheap when it is already awake)."""
        self._event.set()

    def wait(self, timeout: float | None = None) -> None:
        """Sleep until ``set`` (or ``timeout``), then re-arm."""
        self._event.wait(timeout)
        self._event.clear()
