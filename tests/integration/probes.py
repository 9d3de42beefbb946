"""What a bystander sees and what the server holds: ping round trips and resident memory.

A bystander's Socket.IO client pings back to back in a thread and keeps every round trip,
timed to the ``pong`` event (the first write of the reply, so delayed ACK on the ack does
not count); the server's resident memory comes from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import socketio


class PingProbe:
    """A bystander's Socket.IO client pinging in a thread, ~80 a second at most (under the
    default rate limit of 100/s); keeps every RTT. An ``error`` answer (a refused ping)
    is kept in ``errors`` and ends the probe, rather than a 30 s wait for a pong."""

    #: Pause between a pong and the next ping.
    PAUSE = 0.012

    def __init__(self, server: Any, token: str) -> None:
        self.client = socketio.Client(reconnection=False)
        self.round_trips: list[float] = []
        self.errors: list[Any] = []
        self._pong = threading.Event()
        self._running = True
        self.client.on("pong", lambda message: self._pong.set())
        self.client.on("error", self._refused)
        self.client.connect(server.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            self._pong.clear()
            sent = time.perf_counter()
            self.client.emit("ping", {"sent": sent})
            if not self._pong.wait(30):
                self.round_trips.append(30.0)
                return
            if self.errors:
                return
            self.round_trips.append(time.perf_counter() - sent)
            time.sleep(self.PAUSE)

    def _refused(self, message: Any) -> None:
        self.errors.append(message)
        self._pong.set()

    def stop(self) -> list[float]:
        """Stop pinging; every round trip, sorted."""
        self._running = False
        self._thread.join(35)
        self.client.disconnect()
        assert not self.errors, f"the bystander's pings were refused: {self.errors[:3]}"
        return sorted(self.round_trips)


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssSampler:
    """Peak resident memory of a process, sampled every 20 ms from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.peak = rss(pid)
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.02)

    def stop(self) -> int:
        """Growth of the peak over the start, in bytes."""
        self._running = False
        self._thread.join(5)
        return self.peak - self.start


def p99(samples: list[float]) -> float:
    """The 99th percentile of sorted samples."""
    return samples[min(len(samples) - 1, int(len(samples) * 0.99))]
