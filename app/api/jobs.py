"""``/api/jobs``: submit, list, read, history, cancel; ``/api/kinds``: what can be submitted."""

from __future__ import annotations

from typing import Any

from ..auth.tokens import current_user
from ..inputs import CLIENT_ID_REGEX
from ..jobs import history, service
from ..jobs.registry import all_kinds
from ..models import JobStatus
from . import bp
from .schema import OFFSET, integer, spec

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
SNAPSHOT_SCHEMA = {
    "type": "object",
    "required": ["id", "kind", "status", "last_seq"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "status": {"enum": [s.value for s in JobStatus]},
        "last_seq": {"type": "integer"},
    },
}
JOB_SCHEMA = {"type": "object", "required": ["job"], "properties": {"job": SNAPSHOT_SCHEMA}}
JOBS_SCHEMA = {
    "type": "object",
    "required": ["jobs"],
    "properties": {"jobs": {"type": "array", "items": SNAPSHOT_SCHEMA}},
}
EVENTS_SCHEMA = {
    "type": "object",
    "required": ["job_id", "last_seq", "first_seq", "complete", "events"],
    "properties": {
        "job_id": {"type": "integer"},
        "last_seq": {"type": "integer"},
        "first_seq": {"type": ["integer", "null"]},
        "complete": {"type": "boolean"},
        "events": {"type": "array"},
    },
}


@bp.post("/jobs")
@spec(body=SUBMIT_SCHEMA, responses={202: JOB_SCHEMA, 404: None, 409: None})
def submit_job(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Submit a job ``{kind, params, client_id?}``; it starts now or waits as pending.

    Some kinds refer to other resources in their params: 404 when one is not yours, 409
    when it is not ready (an upload still arriving, a dataset that exists).
    """
    job = service.submit_job(current_user().id, body["kind"], body.get("params"), client_id=body.get("client_id"))
    return {"job": service.job_snapshot(job)}, 202


@bp.get("/jobs")
@spec(
    query={
        "status": {"type": "string", "enum": [s.value for s in JobStatus]},
        "kind": {"type": "string"},
        "limit": integer(50, minimum=1, maximum=500),
        "offset": OFFSET,
    },
    responses={200: JOBS_SCHEMA},
)
def list_jobs(status: str | None, kind: str | None, limit: int, offset: int) -> dict[str, Any]:
    """Your jobs, newest first; filter with ``status`` and ``kind``."""
    jobs = service.list_jobs(current_user().id, status=status, kind=kind, limit=limit, offset=offset)
    return {"jobs": [service.job_snapshot(job) for job in jobs]}


@bp.get("/jobs/<id:job_id>")
@spec(responses={200: JOB_SCHEMA})
def get_job(job_id: int) -> dict[str, Any]:
    """One job's snapshot (status, progress, counts, result, error, last_seq)."""
    return {"job": service.job_snapshot(service.get_owned_job(current_user().id, job_id))}


@bp.get("/jobs/<id:job_id>/events")
@spec(query={"after": OFFSET, "limit": integer(1000, minimum=1, maximum=10_000)}, responses={200: EVENTS_SCHEMA})
def job_events(job_id: int, after: int, limit: int) -> dict[str, Any]:
    """Durable events with ``seq > after`` (default 0), in order: the same messages as live.

    ``first_seq`` is the oldest event still kept (history retention may have deleted
    older ones); ``complete`` is false when events after ``after`` are no longer kept —
    then the job itself (``GET /api/jobs/<id>``) is the state to start again from.
    """
    job = service.get_owned_job(current_user().id, job_id)
    events = service.job_events(job.id, after=after, limit=limit)
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
@spec(responses={202: JOB_SCHEMA, 409: None})
def cancel_job(job_id: int) -> tuple[dict[str, Any], int]:
    """Cancel a pending or running job (409 ``job_finished`` when it has already ended)."""
    job = service.cancel_job(service.get_owned_job(current_user().id, job_id))
    return {"job": service.job_snapshot(job)}, 202


@bp.get("/kinds")
@spec(responses={200: {"type": "object", "required": ["kinds"], "properties": {"kinds": {"type": "array"}}}})
def list_kinds() -> dict[str, Any]:
    """Job kinds with their params schema (drives the New-job form)."""
    return {"kinds": [kind.describe() for kind in all_kinds()]}
