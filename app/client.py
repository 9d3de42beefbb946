"""A small Python client for a remote Herald: log in, submit jobs, follow their events.

``events(job_id)`` yields every durable event (in seq order, once) and progress ticks until
the job ends. It subscribes over Socket.IO with ``last_seq``, so after a dropped
connection it reconnects and the server replays exactly what was missed.

    client = HeraldClient("http://127.0.0.1:5000")
    client.login("alice", "password123")
    job = client.submit("simulate", {"steps": 10})
    for message in client.events(job["id"]):
        print(message["type"], message["data"])
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import requests
import socketio

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
_DISCONNECTED = object()


class HeraldClientError(Exception):
    """A refused request or a lost server; ``code`` is Herald's error code when known."""

    def __init__(self, message: str, *, code: str = "client_error", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class HeraldClient:
    """One user's session with a Herald server."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = requests.Session()

    # -- REST -------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API; Herald errors become :class:`HeraldClientError`."""
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.http.request(
                method, self.base_url + path, headers=headers, timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            raise HeraldClientError(f"cannot reach {self.base_url}: {type(exc).__name__}", code="unreachable") from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            if not isinstance(error, dict):
                error = {"code": "http_error", "message": f"HTTP {response.status_code}"}
            raise HeraldClientError(str(error.get("message")), code=str(error.get("code")), status=response.status_code)
        return body

    def login(self, username: str, password: str) -> str:
        """Log in and keep the access token for later calls."""
        body = self.request("POST", "/api/auth/login", json={"username": username, "password": password})
        self.token = str(body["access_token"])
        return self.token

    def submit(
        self, kind: str, params: dict[str, Any] | None = None, *, client_id: str | None = None
    ) -> dict[str, Any]:
        """Submit a job; returns its snapshot."""
        payload: dict[str, Any] = {"kind": kind, "params": params or {}}
        if client_id is not None:
            payload["client_id"] = client_id
        return dict(self.request("POST", "/api/jobs", json=payload)["job"])

    def job(self, job_id: int) -> dict[str, Any]:
        """A job's current snapshot."""
        return dict(self.request("GET", f"/api/jobs/{job_id}")["job"])

    # -- live events -----------------------------------------------------------------

    def events(
        self, job_id: int, *, after: int = 0, timeout: float | None = None, max_reconnects: int = 20
    ) -> Iterator[dict[str, Any]]:
        """Yield the job's messages with ``seq > after`` and progress ticks until it ends.

        A dropped connection is re-opened (growing delay, up to ``max_reconnects`` times in
        a row) and re-subscribed with the last seq seen; a gap in seqs re-subscribes from
        the last contiguous one: no event is lost, repeated or out of order. When the
        server no longer keeps what was missed (history retention) it sends ``resync``
        with the job's snapshot, which is yielded; events go on from its ``last_seq``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last_seq = after
        failures = 0
        while True:
            sio, inbox = self._socket()
            try:
                sio.connect(self.base_url, auth={"token": self.token}, transports=["websocket"], wait_timeout=10)
                ack = sio.call("subscribe", {"job_id": job_id, "last_seq": last_seq}, timeout=15)
            except (socketio.exceptions.SocketIOError, OSError) as exc:
                self._close(sio)
                failures += 1
                if failures > max_reconnects or (deadline is not None and time.monotonic() > deadline):
                    raise HeraldClientError(f"cannot follow job {job_id}: {exc}", code="unreachable") from None
                time.sleep(min(0.5 * 2 ** (failures - 1), 5.0))
                continue
            if not isinstance(ack, dict) or not ack.get("ok"):
                self._close(sio)
                error = (ack or {}).get("error") or {}
                raise HeraldClientError(str(error.get("message", "subscribe refused")), code=str(error.get("code")))
            failures = 0
            early: dict[int, dict[str, Any]] = {}  # events that arrived ahead of a gap
            try:
                while True:
                    if deadline is not None and time.monotonic() > deadline:
                        return
                    try:
                        message = inbox.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if message is _DISCONNECTED:
                        break
                    if not isinstance(message, dict) or message.get("job_id") != job_id:
                        continue
                    if message.get("type") == "resync":
                        # What was missed is no longer kept: start again from the snapshot.
                        early.clear()
                        last_seq = int(message["data"]["last_seq"])
                        yield message
                        if message["data"]["job"].get("status") in FINAL_STATUSES:
                            return
                        continue
                    seq = message.get("seq")
                    if seq is None:
                        yield message
                        continue
                    if seq <= last_seq or seq in early:
                        continue
                    if seq > last_seq + 1:
                        # An event went missing (the server's queue was away): keep this one
                        # and ask for everything after the last contiguous seq.
                        early[seq] = message
                        sio.call("subscribe", {"job_id": job_id, "last_seq": last_seq}, timeout=15)
                        continue
                    for event in self._in_order(message, early):
                        last_seq = event["seq"]
                        yield event
                        if event.get("type") == "job_status" and event["data"].get("status") in FINAL_STATUSES:
                            return
            finally:
                self._close(sio)

    @staticmethod
    def _in_order(message: dict[str, Any], early: dict[int, dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """``message``, then the early arrivals it makes contiguous."""
        yield message
        seq = message["seq"] + 1
        while seq in early:
            yield early.pop(seq)
            seq += 1

    @staticmethod
    def _socket() -> tuple[socketio.Client, queue.Queue[Any]]:
        """A Socket.IO client that puts every message (and its disconnection) in a queue."""
        inbox: queue.Queue[Any] = queue.Queue()
        sio = socketio.Client(reconnection=False)
        sio.on("*", lambda event, message=None: inbox.put(message))
        sio.on("disconnect", lambda *args: inbox.put(_DISCONNECTED))
        return sio, inbox

    @staticmethod
    def _close(sio: socketio.Client) -> None:
        try:
            sio.disconnect()
        except Exception:  # already gone
            pass
