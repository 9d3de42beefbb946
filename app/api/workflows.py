"""``/api/workflows`` (owner-scoped CRUD) and ``/api/v1/executions`` (seed 004's API).

An execution is a job of kind ``workflow`` with the same id: it shows up in
``/api/jobs`` too, and cancels with ``POST /api/jobs/<id>/cancel``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..auth.tokens import current_user
from ..database import commit_session
from ..errors import NotFound, ValidationFailed
from ..extensions import db
from ..inputs import parse_id
from ..jobs import service
from ..jobs.kinds.workflow import missing_inputs, validate_steps
from ..models import Job, JobStatus, Workflow
from ..workflows.executions import EXECUTION_KIND, execution_view
from . import bp
from .schema import OFFSET, integer, spec

WORKFLOW_SCHEMA = {
    "type": "object",
    "required": ["name", "steps"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["kind"],
                "properties": {"kind": {"type": "string", "minLength": 1}, "params": {"type": "object"}},
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
EXECUTION_SCHEMA = {
    "type": "object",
    "required": ["workflow_id"],
    "properties": {
        "workflow_id": {"type": ["integer", "string"], "pattern": "^[0-9]+$"},
        "input_data": {"type": "object"},
    },
    "additionalProperties": False,
}
WORKFLOW_RESPONSE = {
    "type": "object",
    "required": ["workflow"],
    "properties": {
        "workflow": {
            "type": "object",
            "required": ["id", "name", "steps"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "steps": {"type": "array"}},
        }
    },
}
EXECUTION_RESPONSE = {
    "type": "object",
    "required": ["id", "workflow_id", "status", "progress"],
    "properties": {"id": {"type": "integer"}, "status": {"type": "string"}, "progress": {"type": "number"}},
}


def _owned_workflow(workflow_id: int) -> Workflow:
    workflow = db.session.get(Workflow, workflow_id)
    if workflow is None or workflow.owner_id != current_user().id:
        raise NotFound(f"workflow {workflow_id} not found")
    return workflow


@bp.post("/workflows")
@spec(body=WORKFLOW_SCHEMA, responses={201: WORKFLOW_RESPONSE})
def create_workflow(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Save a workflow ``{name, steps: [{kind, params}]}``; references are checked now,
    and a step's literal params as a submission would be (400 naming ``steps[i].params.x``)."""
    owner_id = current_user().id
    workflow = Workflow(owner_id=owner_id, name=body["name"], steps=validate_steps(body["steps"], owner_id))
    db.session.add(workflow)
    commit_session()
    return {"workflow": workflow.to_dict()}, 201


@bp.get("/workflows")
@spec(responses={200: {"type": "object", "required": ["workflows"], "properties": {"workflows": {"type": "array"}}}})
def list_workflows() -> dict[str, Any]:
    """Your workflows, newest first."""
    query = select(Workflow).where(Workflow.owner_id == current_user().id).order_by(Workflow.id.desc())
    return {"workflows": [w.to_dict() for w in db.session.scalars(query)]}


@bp.get("/workflows/<id:workflow_id>")
@spec(responses={200: WORKFLOW_RESPONSE})
def get_workflow(workflow_id: int) -> dict[str, Any]:
    """One of your workflows."""
    return {"workflow": _owned_workflow(workflow_id).to_dict()}


@bp.delete("/workflows/<id:workflow_id>")
@spec(responses={204: None})
def delete_workflow(workflow_id: int) -> tuple[str, int]:
    """Delete a workflow; executions already started keep their copy of the steps."""
    db.session.delete(_owned_workflow(workflow_id))
    commit_session()
    return "", 204


@bp.post("/v1/executions")
@spec(body=EXECUTION_SCHEMA, responses={201: EXECUTION_RESPONSE, 404: None})
def create_execution(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Execute a workflow ``{workflow_id, input_data}``; watch it on ``/api/v1/ws/executions/<id>``.

    404 when the workflow is not yours.
    """
    workflow = _owned_workflow(parse_id(body["workflow_id"], "workflow_id"))
    input_data = body.get("input_data") or {}
    missing = missing_inputs(workflow.steps, input_data)
    if missing:
        raise ValidationFailed(f"input_data lacks {', '.join(missing)}", details={"path": "input_data"})
    params = {"workflow_id": workflow.id, "name": workflow.name, "steps": workflow.steps, "input": input_data}
    job = service.submit_job(current_user().id, EXECUTION_KIND, params, internal=True)
    return _views([job])[0], 201


@bp.get("/v1/executions")
@spec(
    query={"limit": integer(50, minimum=1, maximum=500), "offset": OFFSET},
    responses={
        200: {
            "type": "object",
            "required": ["executions"],
            "properties": {"executions": {"type": "array", "items": EXECUTION_RESPONSE}},
        }
    },
)
def list_executions(limit: int, offset: int) -> dict[str, Any]:
    """Your workflow executions, newest first."""
    executions = service.JobFilter(kind=EXECUTION_KIND)
    jobs = service.list_jobs(current_user().id, limit=limit, offset=offset, where=executions)
    return {"executions": _views(jobs)}


@bp.get("/v1/executions/<id:execution_id>")
@spec(responses={200: EXECUTION_RESPONSE})
def get_execution(execution_id: int) -> dict[str, Any]:
    """One execution: status, progress 0-100, result or error, execution_time."""
    job = service.get_owned_job(current_user().id, execution_id)
    if job.kind != EXECUTION_KIND:
        raise NotFound(f"execution {execution_id} not found")
    return _views([job])[0]


def _views(jobs: list[Job]) -> list[dict[str, Any]]:
    """Executions as REST shows them; ended ones read their status events' moments, the
    instants the seed-004 socket measures ``execution_time`` between."""
    snapshots = [service.job_snapshot(job) for job in jobs]
    moments = service.status_moments(s["id"] for s in snapshots if JobStatus(s["status"]).is_final)
    return [execution_view(s, moments.get(s["id"], (None, None))) for s in snapshots]
