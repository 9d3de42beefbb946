"""Is the message queue usable? A cached Redis PING for ``/health`` and the start-up log.

python-socketio's Redis manager connects lazily and retries in the background, so a
process whose ``MESSAGE_QUEUE_URL`` is wrong starts, serves its own clients, and never
says that nothing crosses processes. :class:`QueueProbe` asks Redis directly.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask

log = logging.getLogger("herald")

#: How long one probe result is reused: ``/health`` stays cheap under frequent polling.
CACHE_SECONDS = 1.0
#: Socket connect and read timeout of the probe, in seconds.
PROBE_TIMEOUT = 0.5


def redacted(url: str) -> str:
    """The URL without its password, fit for logs and ``/health``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class QueueProbe:
    """PINGs the Redis behind ``MESSAGE_QUEUE_URL`` and caches the answer for a second."""

    def __init__(self, url: str | None, *, timeout: float = PROBE_TIMEOUT, cache_seconds: float = CACHE_SECONDS):
        self.url = url
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._client: Any = None
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._result: dict[str, Any] = {}

    def check(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded"|"disabled", ...}``, at most one PING per second."""
        if not self.url:
            return {"status": "disabled"}
        with self._lock:
            if time.monotonic() - self._checked_at < self.cache_seconds:
                return dict(self._result)
        result = self._ping()
        with self._lock:
            self._result, self._checked_at = result, time.monotonic()
        return dict(result)

    def _ping(self) -> dict[str, Any]:
        assert self.url
        base = {"url": redacted(self.url)}
        try:
            import redis
        except ImportError:
            return {**base, "status": "degraded", "reason": "the redis package is not installed (pip install redis)"}
        try:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
                )
            self._client.ping()
        except Exception as exc:  # any failure means the queue is not usable
            return {**base, "status": "degraded", "reason": f"{type(exc).__name__}: {exc}"}
        return {**base, "status": "ok"}


def init_queue_probe(app: Flask) -> QueueProbe:
    """Attach the probe for this app's ``MESSAGE_QUEUE_URL`` (no connection is made yet)."""
    probe = QueueProbe(app.config.get("MESSAGE_QUEUE_URL"))
    app.extensions["herald_queue_probe"] = probe
    return probe


def log_queue_at_start(app: Flask) -> dict[str, Any]:
    """One log line when serving starts: whether the message queue is usable, and if not, why."""
    result = app.extensions["herald_queue_probe"].check()
    if result["status"] == "ok":
        log.info("message queue %s: reachable", result["url"])
    elif result["status"] == "degraded":
        log.error(
            "message queue %s is unusable (%s): events will not reach clients of other processes",
            result["url"],
            result["reason"],
        )
    return result
