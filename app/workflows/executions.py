"""A workflow execution as clients see it (seed 004): one view for REST and the socket.

An execution is a job of kind :data:`EXECUTION_KIND` with the same id. The REST view and
the ``/api/v1/ws/executions/<id>`` status messages are both built from these helpers, so
neither needs the job kind's module, and the socket renders from messages alone.

``execution_time`` runs from the job's last ``running`` ``job_status`` event to its final
one: the socket reads those instants as message timestamps, REST reads the same stored
events (``jobs.service.status_moments``), so the two agree to the millisecond.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..models import JobStatus

#: The job kind that runs a workflow execution.
EXECUTION_KIND = "workflow"

#: ``(started, finished)``: ISO timestamps of the ``running`` and final status events.
Moments = tuple[str | None, str | None]


def percent(progress: dict[str, Any] | None) -> int:
    """A progress tick as a whole percentage 0-100."""
    value = (progress or {}).get("percent")
    if not isinstance(value, int | float):
        return 0
    return max(0, min(100, int(value)))


def execution_time(started_at: str | None, finished_at: str | None) -> float | None:
    """Seconds from start to end (ISO timestamps), once both are known."""
    if not started_at or not finished_at:
        return None
    seconds = (datetime.fromisoformat(finished_at) - datetime.fromisoformat(started_at)).total_seconds()
    return round(max(0.0, seconds), 3)


def error_text(error: Any) -> str | None:
    """The error's message (the document shows a string)."""
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "")
    return None if error is None else str(error)


def execution_view(snapshot: dict[str, Any], moments: Moments = (None, None)) -> dict[str, Any]:
    """An execution as ``/api/v1/executions`` shows it, from the job's snapshot and the
    moments of its status events (``execution_time`` only once it has ended)."""
    params = snapshot.get("params") or {}
    status = snapshot["status"]
    progress = snapshot.get("progress") or {}
    error = snapshot.get("error")
    return {
        "id": snapshot["id"],
        "workflow_id": params.get("workflow_id"),
        "workflow_name": params.get("name"),
        "status": status,
        "progress": 100 if status == JobStatus.COMPLETED.value else percent(progress),
        "message": snapshot.get("message") or progress.get("message"),
        "input_data": params.get("input") or {},
        "result": snapshot.get("result"),
        "error": error_text(error),
        "error_code": error.get("code") if isinstance(error, dict) else None,
        "execution_time": execution_time(*moments) if JobStatus(status).is_final else None,
        "created_at": snapshot.get("created_at"),
        "started_at": snapshot.get("started_at"),
        "finished_at": snapshot.get("finished_at"),
        "last_seq": snapshot.get("last_seq"),
    }
