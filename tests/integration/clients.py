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
        # python-engineio's client leaves its WebSocket open when the server dropped the
        # connection without a CLOSE packet (a cut-off, a rate limit): close it here.
        ws = getattr(self.client.eio, "ws", None)
        if ws is not None:
            ws.close()


def durable_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Durable messages as the events endpoint stores them (``type``, ``job_id``, ``seq``, ``data``)."""
    return [{k: m[k] for k in ("type", "job_id", "seq", "data")} for m in messages if m.get("seq") is not None]


def kill_restart_and_check_interrupted(server: Any, watcher: Recorder, job_id: int) -> str:
    """``kill -9`` the server while ``watcher`` follows the job, start it again and check
    the job ends interrupted (:func:`check_killed_job_ends_interrupted`); returns a fresh
    token of alice's."""
    server.kill()
    seen = watcher.of_job(job_id)
    watcher.close()
    server.start()
    token = str(server.login("alice"))
    check_killed_job_ends_interrupted(server, token, job_id, seen)
    return token


def check_killed_job_ends_interrupted(server: Any, token: str, job_id: int, seen_live: list[dict[str, Any]]) -> None:
    """After ``kill -9`` and a restart: the job ends ``failed`` ``interrupted``, nothing of the
    user's is left active, the history is contiguous and keeps every seq a client saw
    before the crash as it was sent (no seq reused), and clients on either transport that
    resume from their last seq get the terminal status."""
    import asyncio

    from tests.helpers import wait_for

    from .conftest import KILLED_JOBS_SETTLE_WITHIN
    from .plain_ws import connect, is_final_status, recv_until, send_json

    def settled() -> dict[str, Any] | None:
        jobs = server.api("GET", "/api/jobs?limit=200", token).json()["jobs"]
        if any(job["status"] in ("pending", "running") for job in jobs):
            return None
        return next(job for job in jobs if job["id"] == job_id)

    snapshot = wait_for(settled, timeout=KILLED_JOBS_SETTLE_WITHIN + 5, interval=0.05)
    assert snapshot["status"] == "failed" and snapshot["error"]["code"] == "interrupted", snapshot
    stored = server.api("GET", f"/api/jobs/{job_id}/events?limit=1000", token).json()["events"]
    assert [event["seq"] for event in stored] == list(range(1, snapshot["last_seq"] + 1))
    seen = durable_messages(seen_live)
    assert seen, "the client saw nothing before the crash"
    assert durable_messages(stored[: len(seen)]) == seen  # what went out before is what is kept
    assert is_final_status(stored[-1]) and stored[-1]["data"]["error"]["code"] == "interrupted"
    last_seen = seen[-1]["seq"]

    resumed = Recorder(server, token)
    try:
        ack = resumed.client.call("subscribe", {"job_id": job_id, "last_seq": last_seen}, timeout=10)
        assert ack["ok"] is True and ack["job"]["status"] == "failed"
        wait_for(lambda: resumed.job_finished(job_id), timeout=10)
        assert durable_messages(resumed.of_job(job_id)) == durable_messages(stored[last_seen:])
    finally:
        resumed.close()

    async def plain() -> list[dict[str, Any]]:
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "subscribe", "job_id": job_id, "last_seq": last_seen})
            return await recv_until(ws, is_final_status, timeout=10)

    received = asyncio.run(plain())
    assert durable_messages(received) == durable_messages(stored[last_seen:])
