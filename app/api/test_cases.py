"""``/api/test-cases``: CRUD for API test cases (YAML or JSON body), their results, a run shortcut."""

from __future__ import annotations

from typing import Any

from flask import request

from ..apitests import store
from ..auth.tokens import current_user
from ..errors import BadRequest, PayloadTooLarge
from ..jobs import service
from . import bp
from .jobs import JOB_SCHEMA
from .schema import OFFSET, Body, Schema, integer, spec

#: Largest test case body accepted, in bytes.
MAX_CASE_BYTES = 256 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")

CASE_BODY = {
    "type": "object",
    "description": "A test case (seed 003 shape); send YAML with Content-Type application/yaml, or this as JSON",
    "required": ["name", "steps"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "config": {"type": "object"},
        "steps": {"type": "array", "items": {"type": "object"}},
    },
}
CASE_RESPONSE = {"type": "object", "required": ["test_case"], "properties": {"test_case": {"type": "object"}}}
CASES_RESPONSE = {"type": "object", "required": ["test_cases"], "properties": {"test_cases": {"type": "array"}}}
RESULTS_RESPONSE = {
    "type": "object",
    "required": ["test_case_id", "results"],
    "properties": {"test_case_id": {"type": "integer"}, "results": {"type": "array"}},
}


def _submission(schema: Schema) -> str | dict[str, Any]:
    """The request body: YAML text (by Content-Type) or a JSON object.

    ``schema`` only documents the shape: ``store`` checks the case itself, with errors
    that name the YAML line (400 ``invalid_test_case``).
    """
    if (request.content_length or 0) > MAX_CASE_BYTES:
        raise PayloadTooLarge(f"a test case is at most {MAX_CASE_BYTES} bytes")
    mimetype = request.mimetype or ""
    if mimetype in YAML_TYPES:
        raw = request.get_data(cache=False)
        if len(raw) > MAX_CASE_BYTES:
            raise PayloadTooLarge(f"a test case is at most {MAX_CASE_BYTES} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the YAML body must be UTF-8", code="invalid_yaml") from None
    data = request.get_json() if request.is_json else None  # JSON that does not parse: invalid_json, saying why
    if not isinstance(data, dict):
        raise BadRequest(
            "send the test case as YAML (Content-Type: application/yaml) or as a JSON object", code="invalid_body"
        )
    return data


#: A case as JSON (described by ``CASE_BODY``) or as YAML text.
CASE = Body(
    CASE_BODY,
    read=_submission,
    alternatives={name: {"type": "string", "description": "the case as YAML (UTF-8)"} for name in YAML_TYPES},
)


@bp.post("/test-cases")
@spec(body=CASE, responses={201: CASE_RESPONSE})
def create_test_case(body: str | dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Create a test case from YAML or JSON; errors name the line (YAML) and path."""
    row = store.create_case(current_user().id, body)
    return {"test_case": row.to_dict()}, 201


@bp.get("/test-cases")
@spec(query={"limit": integer(100, minimum=1, maximum=1000), "offset": OFFSET}, responses={200: CASES_RESPONSE})
def list_test_cases(limit: int, offset: int) -> dict[str, Any]:
    """Your test cases, newest first (without their source)."""
    rows = store.list_cases(current_user().id, limit=limit, offset=offset)
    return {"test_cases": [row.to_dict(with_source=False) for row in rows]}


@bp.get("/test-cases/<id:case_id>")
@spec(responses={200: CASE_RESPONSE})
def get_test_case(case_id: int) -> dict[str, Any]:
    """One test case with its YAML source and checked form."""
    return {"test_case": store.get_owned_case(current_user().id, case_id).to_dict()}


@bp.put("/test-cases/<id:case_id>")
@spec(body=CASE, responses={200: CASE_RESPONSE})
def update_test_case(case_id: int, body: str | dict[str, Any]) -> dict[str, Any]:
    """Replace a test case's content (YAML or JSON); its results stay."""
    row = store.get_owned_case(current_user().id, case_id)
    return {"test_case": store.update_case(row, body).to_dict()}


@bp.delete("/test-cases/<id:case_id>")
@spec(responses={204: None})
def delete_test_case(case_id: int) -> tuple[str, int]:
    """Delete a test case and its stored results."""
    store.delete_case(store.get_owned_case(current_user().id, case_id))
    return "", 204


@bp.get("/test-cases/<id:case_id>/results")
@spec(query={"limit": integer(50, minimum=1, maximum=500), "offset": OFFSET}, responses={200: RESULTS_RESPONSE})
def list_test_case_results(case_id: int, limit: int, offset: int) -> dict[str, Any]:
    """Stored runs of a case, newest first: per step request, response, timing, assertions."""
    row = store.get_owned_case(current_user().id, case_id)
    results = store.list_results(row, limit=limit, offset=offset)
    return {"test_case_id": row.id, "results": [r.to_dict() for r in results]}


@bp.post("/test-cases/<id:case_id>/run")
@spec(responses={202: JOB_SCHEMA})
def run_test_case(case_id: int) -> tuple[dict[str, Any], int]:
    """Run a case now: submits an ``api_test`` job and returns it."""
    row = store.get_owned_case(current_user().id, case_id)
    job = service.submit_job(current_user().id, "api_test", {"test_case_id": row.id})
    return {"job": service.job_snapshot(job)}, 202
