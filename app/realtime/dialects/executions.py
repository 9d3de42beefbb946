"""Seed 004: ``/api/v1/ws/executions/<execution_id>`` — one workflow execution's status.

Right after connect the current state, then one message on every change::

    {"type": "status", "execution_id": 7, "status": "running", "progress": 50,
     "message": "step 2 of 3: simulate", "result": null, "error": null, "execution_time": null}

``progress`` is a percentage 0-100; ``execution_time`` (seconds) and ``result`` or
``error`` come with the final status, after which the server closes with 1000. ``ping``
→ ``pong``; bad input → ``{"type": "error", "message"}``. An unknown execution, or
another user's, gets an error and close 1008. Per-step ``node_status`` and ``log``
messages ride along (the document's wished-for node status and live logs).

Rendering reads the message alone: ``execution_time`` runs from the ``running`` status
message's timestamp to the final one's (at subscribe, from the same stored events), which
is how REST measures it too (``app/workflows/executions.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import NotFound, ValidationFailed
from ...inputs import parse_id
from ...jobs.service import get_owned_job, status_moments
from ...models import FINAL_STATUSES, JobStatus
from ...workflows.executions import EXECUTION_KIND, Moments, error_text, execution_time, percent
from ..messages import Message, is_progress
from ..subscriptions import Subscribed
from . import Close, Dialect, Payload, subscribe_plain

if TYPE_CHECKING:
    from ..ws import PlainSocket

STATUS_KEYS = ("status", "progress", "message", "result", "error", "execution_time")


class ExecutionDialect(Dialect):
    """Seed 004's status stream for one execution (a ``workflow`` job with the same id)."""

    name = "execution"

    def __init__(self, execution_id: str) -> None:
        self.raw_id = execution_id
        self.execution_id = 0
        self.state: dict[str, Any] = {key: None for key in STATUS_KEYS}
        self.started_at: str | None = None
        self.finished = False

    def open(self, conn: PlainSocket) -> None:
        try:
            execution_id = parse_id(self.raw_id, "execution_id")
            job = get_owned_job(conn.user_id, execution_id)
            if job.kind != EXECUTION_KIND:
                raise NotFound(f"execution {execution_id} not found")
        except ValidationFailed as exc:  # an id that cannot be one, as over REST
            self._refuse(conn, "invalid_id", f"{exc.message}, not {self.raw_id[:40]!r}")
            return
        except NotFound:  # another user's execution is indistinguishable from a missing one
            self._refuse(conn, "not_found", f"execution {self.raw_id} not found")
            return
        self.execution_id = execution_id
        subscribed = subscribe_plain(conn, execution_id, None, self._subscribed)
        if self.finished:
            conn.close(1000, f"execution {subscribed.snapshot['status']}")

    def _refuse(self, conn: PlainSocket, code: str, message: str) -> None:
        conn.send(self.error(code, message))
        conn.close(1008, message)

    def _subscribed(self, subscribed: Subscribed) -> list[Payload]:
        """At subscribe: when it started (and ended), from the status events the messages
        before the snapshot carried; nothing to read while it is still pending."""
        snapshot = subscribed.snapshot
        moments: Moments = (None, None)
        if snapshot["status"] != JobStatus.PENDING.value:
            moments = status_moments([self.execution_id]).get(self.execution_id, moments)
        return self._first(snapshot, moments)

    def _first(self, snapshot: dict[str, Any], moments: Moments | None = None) -> list[Payload]:
        """The current state, from the job's snapshot (and this process's freshest tick)."""
        started, finished = moments or (snapshot.get("started_at"), snapshot.get("finished_at"))
        self.started_at = started
        self.finished = JobStatus(snapshot["status"]) in FINAL_STATUSES
        progress = snapshot.get("progress") or {}
        self.state.update(
            status=snapshot["status"],
            progress=100 if snapshot["status"] == JobStatus.COMPLETED.value else percent(progress),
            message=snapshot.get("message") or progress.get("message"),
            result=snapshot.get("result"),
            error=error_text(snapshot.get("error")),
            execution_time=execution_time(started, finished) if self.finished else None,
        )
        return [self._status()]

    def _status(self) -> Payload:
        return {"type": "status", "execution_id": self.execution_id, **self.state}

    def on_ping(self, conn: PlainSocket, message: dict[str, Any]) -> None:
        conn.send({"type": "pong"})

    def render(self, conn: PlainSocket, message: Message) -> list[Payload | Close]:
        if self.finished:
            return []
        kind = message.get("type")
        data = message.get("data") or {}
        before = dict(self.state)
        extra: list[Payload | Close] = []
        if kind == "job_status":
            status = data.get("status")
            self.state["status"] = status
            if status == JobStatus.RUNNING.value:
                self.started_at = message.get("timestamp")
            if status in {s.value for s in FINAL_STATUSES}:
                self.finished = True
                self.state["result"] = data.get("result")
                self.state["error"] = error_text(data.get("error"))
                self.state["execution_time"] = execution_time(self.started_at, message.get("timestamp"))
                if status == JobStatus.COMPLETED.value:
                    self.state["progress"] = 100
        elif is_progress(message):
            self.state["progress"] = percent(data)
            if data.get("message"):
                self.state["message"] = data["message"]
        elif kind == "job_message":
            self.state["message"] = data.get("message")
        elif kind == "node_status":
            extra.append({"type": "node_status", "execution_id": self.execution_id, **data})
        elif kind == "job_log":
            extra.append(
                {
                    "type": "log",
                    "execution_id": self.execution_id,
                    "level": data.get("level"),
                    "message": data.get("message"),
                    "timestamp": message.get("timestamp"),
                }
            )
        out: list[Payload | Close] = extra
        if self.state != before:
            out.append(self._status())
        if self.finished:
            out.append(Close(1000, f"execution {self.state['status']}"))
        return out

    def error(self, code: str, message: str) -> Payload:
        return {"type": "error", "code": code, "message": message}
