"""Seed 004: ``/api/v1/ws/executions/<execution_id>`` — one workflow execution's status.

Right after connect the current state, then one message on every change::

    {"type": "status", "execution_id": 7, "status": "running", "progress": 50,
     "message": "step 2 of 3: simulate", "result": null, "error": null, "execution_time": null}

``progress`` is a percentage 0-100; ``execution_time`` (seconds) and ``result`` or
``error`` come with the final status, after which the server closes with 1000. ``ping``
→ ``pong``; bad input → ``{"type": "error", "message"}``. An unknown execution, or
another user's, gets an error and close 1008. Per-step ``node_status`` and ``log``
messages ride along (the document's wished-for node status and live logs).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from ...errors import NotFound, ValidationFailed
from ...extensions import db
from ...inputs import parse_id
from ...jobs.kinds.workflow import EXECUTION_KIND, error_text, execution_time, percent
from ...jobs.service import get_owned_job
from ...models import FINAL_STATUSES, Job, JobStatus, isoformat
from ..messages import Message, is_progress
from . import Close, Dialect, Payload, subscribe_plain

if TYPE_CHECKING:
    from ..ws import PlainSocket

log = logging.getLogger(__name__)

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
        self._app: Flask | None = None

    def open(self, conn: PlainSocket) -> None:
        try:
            execution_id = parse_id(self.raw_id, "execution_id")
            job = get_owned_job(conn.user_id, execution_id)
            if job.kind != EXECUTION_KIND:
                raise NotFound(f"execution {execution_id} not found")
        except (ValidationFailed, NotFound):
            message = f"execution {self.raw_id} not found"
            conn.send(self.error("not_found", message))
            conn.close(1008, message)
            return
        self.execution_id = execution_id
        self._app = current_app._get_current_object()  # type: ignore[attr-defined]
        snapshot = subscribe_plain(conn, execution_id, None, self._first)
        if self.finished:
            conn.close(1000, f"execution {snapshot['status']}")

    def _first(self, snapshot: dict[str, Any]) -> list[Payload]:
        """The current state, from the job's row (and this process's freshest tick)."""
        self.started_at = snapshot.get("started_at")
        progress = snapshot.get("progress") or {}
        self.state.update(
            status=snapshot["status"],
            progress=100 if snapshot["status"] == JobStatus.COMPLETED.value else percent(progress),
            message=snapshot.get("message") or progress.get("message"),
            result=snapshot.get("result"),
            error=error_text(snapshot.get("error")),
            execution_time=execution_time(snapshot.get("started_at"), snapshot.get("finished_at")),
        )
        self.finished = JobStatus(snapshot["status"]) in FINAL_STATUSES
        return [self._status()]

    def _status(self) -> Payload:
        return {"type": "status", "execution_id": self.execution_id, **self.state}

    def handle(self, conn: PlainSocket, message: dict[str, Any]) -> None:
        if message["type"] == "ping":
            conn.send({"type": "pong"})
            return
        super().handle(conn, message)

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
                self.started_at = self.started_at or message.get("timestamp")
            if status in {s.value for s in FINAL_STATUSES}:
                self.finished = True
                self.state["result"] = data.get("result")
                self.state["error"] = error_text(data.get("error"))
                self.state["execution_time"] = self._execution_time(message.get("timestamp"))
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

    def _execution_time(self, finished: str | None) -> float | None:
        """From the row's start and end, as REST reports it (the event only says "done")."""
        started = self.started_at
        if self._app is not None:
            try:
                with self._app.app_context():
                    job = db.session.get(Job, self.execution_id)
                    if job is not None and job.started_at and job.finished_at:
                        started, finished = isoformat(job.started_at), isoformat(job.finished_at)
                    db.session.remove()
            except Exception:
                log.exception("reading execution %s for its execution_time failed", self.execution_id)
        return execution_time(started, finished)

    def error(self, code: str, message: str) -> Payload:
        return {"type": "error", "code": code, "message": message}
