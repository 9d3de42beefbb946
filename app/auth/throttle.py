"""Failed-login throttling: a guessing client is slowed down, a typo is not.

Counts failures per (username, remote address) in a sliding window, in this process.
Several processes each keep their own window; a shared store is not worth its cost here.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class LoginThrottle:
    """At most ``limit`` failed logins per key within ``window`` seconds."""

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        key = (username.lower(), address)
        now = time.monotonic()
        with self._lock:
            failures = self._failures.get(key)
            if not failures:
                return 0
            while failures and now - failures[0] > self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return 0
            return max(1, int(self.window - (now - failures[0])) + 1)

    def failed(self, username: str, address: str) -> None:
        """Record a failed attempt."""
        key = (username.lower(), address)
        with self._lock:
            if len(self._failures) > 100_000:  # bound memory under a spray of names
                self._failures.clear()
            self._failures.setdefault(key, deque()).append(time.monotonic())

    def succeeded(self, username: str, address: str) -> None:
        """Forget the failures of a key after a good login."""
        with self._lock:
            self._failures.pop((username.lower(), address), None)


login_throttle = LoginThrottle()
