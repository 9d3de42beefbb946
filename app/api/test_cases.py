"""``/api/test-cases``: CRUD for API test cases (YAML or JSON body), their results, a run shortcut."""

from __future__ import annotations

from typing import Any

from flask import request

from ..apitests import store
from ..auth.tokens import current_user, login_required
from ..errors import BadRequest, PayloadTooLarge
from ..jobs import service
from . import bp
from .schema import query_int, spec

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
CASE_RESPONSE = {"type": "object", "properties": {"test_case": {"type": "object"}}}
CASES_RESPONSE = {"type": "object", "properties": {"test_cases": {"type": "array"}}}
RESULTS_RESPONSE = {"type": "object", "properties": {"results": {"type": "array"}}}


def _submission() -> str | dict[str, Any]:
    """The request body: YAML text (by Content-Type) or a JSON object."""
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
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest(
            "send the test case as YAML (Content-Type: application/yaml) or as a JSON object", code="invalid_body"
        )
    return data


@bp.post("/test-cases")
@spec(body=CASE_BODY, responses={201: CASE_RESPONSE, 400: None, 401: None, 413: None})
@login_required
def create_test_case() -> tuple[dict[str, Any], int]:
    """Create a test case from YAML or JSON; errors name the line (YAML) and path."""
    row = store.create_case(current_user().id, _submission())
    return {"test_case": row.to_dict()}, 201


@bp.get("/test-cases")
@spec(query={"limit": {"type": "integer"}, "offset": {"type": "integer"}}, responses={200: CASES_RESPONSE, 401: None})
@login_required
def list_test_cases() -> dict[str, Any]:
    """Your test cases, newest first (without their source)."""
    rows = store.list_cases(
        current_user().id, limit=query_int("limit", 100, minimum=1, maximum=1000), offset=query_int("offset", 0)
    )
    return {"test_cases": [row.to_dict(with_source=False) for row in rows]}


@bp.get("/test-cases/<id:case_id>")
@spec(responses={200: CASE_RESPONSE, 404: None})
@login_required
def get_test_case(case_id: int) -> dict[str, Any]:
    """One test case with its YAML source and checked form."""
    return {"test_case": store.get_owned_case(current_user().id, case_id).to_dict()}


@bp.put("/test-cases/<id:case_id>")
@spec(body=CASE_BODY, responses={200: CASE_RESPONSE, 400: None, 404: None, 413: None})
@login_required
def update_test_case(case_id: int) -> dict[str, Any]:
    """Replace a test case's content (YAML or JSON); its results stay."""
    row = store.get_owned_case(current_user().id, case_id)
    return {"test_case": store.update_case(row, _submission()).to_dict()}


@bp.delete("/test-cases/<id:case_id>")
@spec(responses={204: None, 404: None})
@login_required
def delete_test_case(case_id: int) -> tuple[str, int]:
    """Delete a test case and its stored results."""
    store.delete_case(store.get_owned_case(current_user().id, case_id))
    return "", 204


@bp.get("/test-cases/<id:case_id>/results")
@spec(query={"limit": {"type": "integer"}, "offset": {"type": "integer"}}, responses={200: RESULTS_RESPONSE, 404: None})
@login_required
def list_test_case_results(case_id: int) -> dict[str, Any]:
    """Stored runs of a case, newest first: per step request, response, timing, assertions."""
    row = store.get_owned_case(current_user().id, case_id)
    results = store.list_results(
        row, limit=query_int("limit", 50, minimum=1, maximum=500), offset=query_int("offset", 0)
    )
    return {"test_case_id": row.id, "results": [r.to_dict() for r in results]}


@bp.post("/test-cases/<id:case_id>/run")
@spec(responses={202: {"type": "object", "properties": {"job": {"type": "object"}}}, 404: None})
@login_required
def run_test_case(case_id: int) -> tuple[dict[str, Any], int]:
    """Run a case now: submits an ``api_test`` job and returns it."""
    row = store.get_owned_case(current_user().id, case_id)
    job = service.submit_job(current_user().id, "api_test", {"test_case_id": row.id})
    return {"job": service.job_snapshot(job)}, 202
