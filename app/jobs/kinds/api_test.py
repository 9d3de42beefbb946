"""``api_test``: run one stored test case and report every step as seed-003 events.

Each engine event becomes a durable job event of the same type (``test_start``,
``step_start``, ``step_complete``, ``log``, ``error``, ``variable_update``,
``test_complete``), filtered by the case's ``send_*`` flags; ``progress`` becomes the
job's coalesced progress tick (type ``progress``). The job completes whether the case
passes or fails: the outcome is ``result.status`` and the stored result.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from ...apitests.engine import Emit, EventFilter, run_case
from ...apitests.hosts import normalise_hosts
from ...apitests.store import get_owned_case, save_result
from ...errors import NotFound
from ...extensions import db
from ..context import JobContext, JobFailed
from ..registry import job_kind, unknown_reference


def emitter_for(ctx: JobContext) -> Emit:
    """Engine events → job events (``progress`` → a progress tick)."""

    def emit(type_: str, data: dict[str, Any]) -> None:
        if type_ == "progress":
            ctx.progress(data["current"], data["total"])
        else:
            ctx.event(type_, data)

    return emit


def run_stored_case(ctx: JobContext, test_case_id: int) -> dict[str, Any]:
    """Run the owner's case ``test_case_id`` in this job and store the result."""
    try:
        case_row = get_owned_case(ctx.owner_id, test_case_id)
    except NotFound as exc:
        raise JobFailed(exc.message, code="not_found") from None
    spec = dict(case_row.spec)
    db.session.rollback()  # no transaction open while requests are in flight
    allowed = normalise_hosts(current_app.config["API_TEST_ALLOWED_HOSTS"])
    outcome = run_case(
        spec,
        allowed_hosts=allowed,
        emit=EventFilter.for_case(spec, emitter_for(ctx)),
        sleep=ctx.sleep,
        check_cancel=ctx.raise_if_cancelled,
    )
    result_row = save_result(case_row, ctx.job_id, outcome)
    summary = {key: outcome[key] for key in ("name", "status", "passed", "failed", "skipped", "duration_ms")}
    summary["test_case_id"] = test_case_id
    summary["result_id"] = result_row.id
    summary["steps"] = [{"name": s["name"], "status": s["status"], "error": s.get("error")} for s in outcome["steps"]]
    db.session.remove()
    return summary


def precheck(owner_id: int, params: dict[str, Any]) -> None:
    """A test case the user does not have is refused at submit (400 naming the field)."""
    try:
        get_owned_case(owner_id, int(params["test_case_id"]))
    except NotFound as exc:
        raise unknown_reference("params.test_case_id", exc.message) from None
    finally:
        db.session.rollback()


def _outcome(params: dict[str, Any], result: Any) -> str:
    """A case that ran but did not pass is a completed job with failures."""
    return "succeeded" if isinstance(result, dict) and result.get("status") == "passed" else "failures"


@job_kind(
    "api_test",
    title="API test case",
    progress_type="progress",
    precheck=precheck,
    outcome=_outcome,
    schema={
        "required": ["test_case_id"],
        "properties": {
            "test_case_id": {
                "type": "integer",
                "minimum": 1,
                "title": "Test case",
                "description": "The stored test case to run (see Test cases)",
            },
        },
    },
)
def api_test(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run one API test case against its target service (hosts limited by API_TEST_ALLOWED_HOSTS)."""
    return run_stored_case(ctx, int(params["test_case_id"]))
