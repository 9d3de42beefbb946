"""``/api/jobs``: submit, list, read, history, cancel; ``/api/kinds``: what can be submitted."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app

from ..auth import scoped
from ..auth.tokens import current_user
from ..errors import ValidationFailed
from ..extensions import db
from ..inputs import CLIENT_ID_REGEX
from ..jobs import history, producers, service
from ..jobs.registry import all_kinds
from ..models import JobStatus, User
from . import bp
from .schema import OFFSET, integer, spec

SUBMIT_SCHEMA = {
    "type": "object",
    "required": ["kind"],
    "properties": {
        "kind": {"type": "string", "minLength": 1, "maxLength": 64},
        "params": {"type": "object"},
        "client_id": {"type": "string", "pattern": CLIENT_ID_REGEX},
        "name": {"type": "string", "description": "kind external only: what the producer runs"},
        "total": {"type": ["number", "null"], "description": "kind external only: units of work, if known"},
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
SUBMITTED_SCHEMA = {
    "type": "object",
    "required": ["job"],
    "properties": {
        "job": SNAPSHOT_SCHEMA,
        "producer_token": {"type": "string", "description": "kind external only: the token its producer reports with"},
        "report_url": {"type": "string", "description": "kind external only: where its producer reports"},
    },
}
JOBS_SCHEMA = {
    "type": "object",
    "required": ["jobs", "total", "status_counts"],
    "properties": {
        "jobs": {"type": "array", "items": SNAPSHOT_SCHEMA},
        "total": {"type": "integer", "description": "jobs matching the filters (all pages)"},
        "status_counts": {"type": "object", "description": "{status: n} under the filters other than status"},
    },
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
@spec(body=SUBMIT_SCHEMA, responses={202: SUBMITTED_SCHEMA, 409: None})
def submit_job(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Submit a job ``{kind, params, client_id?}``; it starts now or waits as pending.

    Some kinds refer to other resources in their params: 400 ``unknown_reference`` with
    ``details.path`` naming the field when one is not yours (a test case, an upload, a
    dataset), 409 when it is not ready (an upload still arriving, a dataset that exists).
    ``{kind: "external", name, total?}`` creates a job a program outside Herald runs: the
    answer adds its ``producer_token`` and ``report_url`` (docs/PLATFORM.md).
    """
    if body["kind"] == producers.EXTERNAL:
        params = dict(body.get("params") or {})
        for name in ("name", "total"):
            if name in body and name in params and body[name] != params[name]:
                raise ValidationFailed(
                    f"{name} is given twice, as {body[name]!r} and as params.{name} {params[name]!r}: send one",
                    details={"path": name},
                )
            if name in body:
                params[name] = body[name]
        job, token = producers.create_external_job(current_user().id, params, client_id=body.get("client_id"))
        report_url = f"/api/jobs/{job.id}/report"
        return {"job": service.job_snapshot(job), "producer_token": token, "report_url": report_url}, 202
    for name in ("name", "total"):
        if name in body:
            raise ValidationFailed(f"{name} is for kind 'external' only", details={"path": name})
    job = service.submit_job(current_user().id, body["kind"], body.get("params"), client_id=body.get("client_id"))
    return {"job": service.job_snapshot(job)}, 202


@bp.get("/jobs")
@spec(
    query={
        "status": {"type": "string", "enum": [s.value for s in JobStatus]},
        "kind": {"type": "string"},
        "limit": integer(50, minimum=1, maximum=500),
        "offset": OFFSET,
        "parent_id": integer(0),  # 0: any parent
        "top_level": {"type": "string", "enum": ["true", "false", "1", "0"]},
        "q": {"type": "string", "maxLength": 200},
    },
    responses={200: JOBS_SCHEMA},
)
def list_jobs(
    status: str | None,
    kind: str | None,
    limit: int,
    offset: int,
    parent_id: int,
    top_level: str | None,
    q: str | None,
) -> dict[str, Any]:
    """Your jobs, newest first; filter with ``status``, ``kind``, ``parent_id`` (its
    children), ``top_level=true`` (jobs no other job started) and ``q`` (a job id, or text
    in the kind or params). ``total`` counts every page; ``status_counts`` counts by status
    under the other filters; each job has ``child_count``."""
    where = service.JobFilter(kind=kind, parent_id=parent_id or None, top_level=top_level in ("true", "1"), search=q)
    user_id = current_user().id
    jobs = service.list_jobs(user_id, status=status, limit=limit, offset=offset, where=where)
    counts = service.status_counts(user_id, where)
    children = service.child_counts(job.id for job in jobs)
    snapshots = [service.job_snapshot(job) | {"child_count": children.get(job.id, 0)} for job in jobs]
    total = counts.get(status, 0) if status else sum(counts.values())
    return {"jobs": snapshots, "total": total, "status_counts": counts}


@bp.get("/jobs/<id:job_id>")
@spec(responses={200: JOB_SCHEMA})
def get_job(job_id: int) -> dict[str, Any]:
    """One job's snapshot (status, outcome, progress, counts, result, error, last_seq),
    with ``owner`` (the username) and ``child_count``."""
    job = service.get_owned_job(current_user().id, job_id)
    owner = db.session.get(User, job.owner_id)
    extra = {"owner": owner.username if owner else None, "child_count": service.child_counts([job.id]).get(job.id, 0)}
    return {"job": service.job_snapshot(job) | extra}


@bp.get("/jobs/<id:job_id>/events")
@spec(query={"after": OFFSET, "limit": integer(1000, minimum=1, maximum=10_000)}, responses={200: EVENTS_SCHEMA})
def job_events(job_id: int, after: int, limit: int) -> Response:
    """Durable events with ``seq > after`` (default 0), in order: the same messages as live.

    ``first_seq`` is the oldest event still kept (history retention may have deleted
    older ones); ``complete`` is false when events after ``after`` are no longer kept —
    then the job itself (``GET /api/jobs/<id>``) is the state to start again from.
    """
    job = service.get_owned_job(current_user().id, job_id)
    events = service.job_event_messages_json(job.id, after=after, limit=limit)
    first_seq = history.first_kept_seq(job.id)
    complete = after >= job.last_seq or (first_seq is not None and first_seq <= after + 1)
    envelope = current_app.json.dumps(
        {"job_id": job.id, "last_seq": job.last_seq, "first_seq": first_seq, "complete": complete}
    )
    # The events are JSON text already (see ``job_event_messages_json``): spliced in.
    return current_app.response_class(envelope[:-1] + ',"events":' + events + "}", mimetype="application/json")


@bp.post("/jobs/<id:job_id>/cancel")
@spec(responses={202: JOB_SCHEMA, 409: None}, auth="access or cancel token")
def cancel_job(job_id: int) -> tuple[dict[str, Any], int]:
    """Cancel a pending or running job (409 ``job_finished`` when it has already ended).

    Takes the access token, or a cancel token of this job (``POST /api/stream-tokens``
    with ``cancel``: what a widget on another site is handed)."""
    job = service.cancel_job(service.get_owned_job(scoped.cancelling_user(job_id), job_id))
    return {"job": service.job_snapshot(job)}, 202


@bp.get("/kinds")
@spec(responses={200: {"type": "object", "required": ["kinds"], "properties": {"kinds": {"type": "array"}}}})
def list_kinds() -> dict[str, Any]:
    """Job kinds with their params schema (drives the New-job form)."""
    return {"kinds": [kind.describe() for kind in all_kinds()]}
