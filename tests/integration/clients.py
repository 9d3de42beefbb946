"""Real Socket.IO clients for integration tests."""

from __future__ import annotations

import threading
from typing import Any

import socketio


class Recorder:
    """A real python-socketio client (websocket transport) that records every message."""

    def __init__(self, server: Any, token: str, **auth: Any) -> None:
        self.client = socketio.Client(reconnection=False)
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.client.on("*", self._record)
        self.client.connect(server.url, auth={"token": token, **auth}, transports=["websocket"], wait_timeout=10)

    def _record(self, event: str, message: Any) -> None:
        if isinstance(message, dict):
            with self.lock:
                self.messages.append(message)

    def of_job(self, job_id: int) -> list[dict[str, Any]]:
        """Every message about one job, in arrival order."""
        with self.lock:
            return [m for m in self.messages if m.get("job_id") == job_id]

    def of_type(self, type_: str, job_id: int | None = None) -> list[dict[str, Any]]:
        """Messages of one type, optionally of one job."""
        with self.lock:
            return [m for m in self.messages if m.get("type") == type_ and (job_id is None or m["job_id"] == job_id)]

    def job_finished(self, job_id: int) -> bool:
        """True once a final ``job_status`` of the job arrived."""
        return any(
            m["type"] == "job_status" and m["data"]["status"] in {"completed", "failed", "cancelled"}
            for m in self.of_job(job_id)
        )

    def close(self) -> None:
        self.client.disconnect()
