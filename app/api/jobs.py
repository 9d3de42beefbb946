"""``/api/jobs``: submit, list, read, history, cancel; ``/api/kinds``: what can be submitted."""

from __future__ import annotations

from typing import Any

from flask import request

from ..auth.tokens import current_user, login_required
from ..errors import ValidationFailed
from ..inputs import CLIENT_ID_REGEX
from ..jobs import history, service
from ..jobs.registry import all_kinds
from ..models import JobStatus
from . import bp
from .schema import json_body, query_int, spec

SUBMIT_SCHEMA = {
    "type": "object",
    "required": ["kind"],
    "properties": {
        "kind": {"type": "string", "minLength": 1, "maxLength": 64},
        "params": {"type": "object"},
        "client_id": {"type": "string", "pattern": CLIENT_ID_REGEX},
    },
    "additionalProperties": False,
}
JOB_SCHEMA = {"type": "object", "properties": {"job": {"type": "object"}}}


@bp.post("/jobs")
@spec(body=SUBMIT_SCHEMA, responses={202: JOB_SCHEMA, 400: None, 401: None})
@login_required
def submit_job() -> tuple[dict[str, Any], int]:
    """Submit a job ``{kind, params, client_id?}``; it starts now or waits as pending."""
    body = json_body()
    job = service.submit_job(current_user().id, body["kind"], body.get("params"), client_id=body.get("client_id"))
    return {"job": service.job_snapshot(job)}, 202


@bp.get("/jobs")
@spec(
    query={
        "status": {"type": "string", "enum": [s.value for s in JobStatus]},
        "kind": {"type": "string"},
        "limit": {"type": "integer"},
        "offset": {"type": "integer"},
    },
    responses={200: {"type": "object", "properties": {"jobs": {"type": "array"}}}, 401: None},
)
@login_required
def list_jobs() -> dict[str, Any]:
    """Your jobs, newest first; filter with ``status`` and ``kind``."""
    status = request.args.get("status") or None
    if status is not None and status not in {s.value for s in JobStatus}:
        raise ValidationFailed(f"unknown status {status!r}", details={"path": "status"})
    jobs = service.list_jobs(
        current_user().id,
        status=status,
        kind=request.args.get("kind") or None,
        limit=query_int("limit", 50, minimum=1, maximum=500),
        offset=query_int("offset", 0),
    )
    return {"jobs": [service.job_snapshot(job) for job in jobs]}


@bp.get("/jobs/<id:job_id>")
@spec(responses={200: JOB_SCHEMA, 404: None})
@login_required
def get_job(job_id: int) -> dict[str, Any]:
    """One job's snapshot (status, progress, counts, result, error, last_seq)."""
    return {"job": service.job_snapshot(service.get_owned_job(current_user().id, job_id))}


@bp.get("/jobs/<id:job_id>/events")
@spec(
    query={"after": {"type": "integer"}, "limit": {"type": "integer"}},
    responses={200: {"type": "object", "properties": {"events": {"type": "array"}}}, 404: None},
)
@login_required
def job_events(job_id: int) -> dict[str, Any]:
    """Durable events with ``seq > after`` (default 0), in order: the same messages as live.

    ``first_seq`` is the oldest event still kept (history retention may have deleted
    older ones); ``complete`` is false when events after ``after`` are no longer kept —
    then the job itself (``GET /api/jobs/<id>``) is the state to start again from.
    """
    job = service.get_owned_job(current_user().id, job_id)
    after = query_int("after", 0)
    events = service.job_events(job.id, after=after, limit=query_int("limit", 1000, minimum=1, maximum=10_000))
    first_seq = history.first_kept_seq(job.id)
    complete = after >= job.last_seq or (first_seq is not None and first_seq <= after + 1)
    return {
        "job_id": job.id,
        "last_seq": job.last_seq,
        "first_seq": first_seq,
        "complete": complete,
        "events": [e.to_message() for e in events],
    }


@bp.post("/jobs/<id:job_id>/cancel")
@spec(responses={202: JOB_SCHEMA, 404: None, 409: None})
@login_required
def cancel_job(job_id: int) -> tuple[dict[str, Any], int]:
    """Cancel a pending or running job (409 when it has already finished)."""
    job = service.cancel_job(service.get_owned_job(current_user().id, job_id))
    return {"job": service.job_snapshot(job)}, 202


@bp.get("/kinds")
@spec(responses={200: {"type": "object", "properties": {"kinds": {"type": "array"}}}})
@login_required
def list_kinds() -> dict[str, Any]:
    """Job kinds with their params schema (drives the New-job form)."""
    return {"kinds": [kind.describe() for kind in all_kinds()]}
