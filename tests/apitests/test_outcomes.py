"""A job's ``outcome``: work that ran to its end but failed somewhere says so."""

from __future__ import annotations

from typing import Any

from tests.data_helpers import run_job, upload_bytes

from .test_test_cases_api import create, events_of, finished_job


def health_case(url: str, expected_status: int) -> dict[str, Any]:
    """A one-step case against the server's own ``/health`` (200): passes when expecting 200."""
    step = {"name": "health", "request": {"method": "GET", "url": url}, "validate": [{"status_code": expected_status}]}
    return {"name": f"expects {expected_status}", "steps": [step]}


def test_a_failing_api_test_completes_with_failures(client, auth, target):
    token = auth.token_for("alice")
    case_id = create(client, auth, token, health_case(f"{target.url}/items", 500)).get_json()["test_case"]["id"]
    job = run_job(client, token, "api_test", {"test_case_id": case_id})
    assert (job["status"], job["outcome"]) == ("completed", "failures")


def test_a_passing_api_test_succeeds(client, auth, target):
    token = auth.token_for("alice")
    case_id = create(client, auth, token, health_case(f"{target.url}/items", 200)).get_json()["test_case"]["id"]
    assert run_job(client, token, "api_test", {"test_case_id": case_id})["outcome"] == "succeeded"


def test_a_batch_with_a_failed_case_completes_with_failures_and_numbers_cases_by_position(client, auth, target):
    token = auth.token_for("alice")
    good = create(client, auth, token, health_case(f"{target.url}/items", 200)).get_json()["test_case"]["id"]
    bad = create(client, auth, token, health_case(f"{target.url}/items", 500)).get_json()["test_case"]["id"]
    ids = [good, bad] * 3
    job = run_job(client, token, "batch_execution", {"test_case_ids": ids, "concurrency": 2}, timeout=60)
    assert (job["status"], job["outcome"]) == ("completed", "failures")
    results = [e["data"] for e in events_of(client, auth, token, job["id"]) if e["type"] == "case_result"]
    assert sorted(r["index"] for r in results) == list(range(6))
    assert all(r["test_case_id"] == ids[r["index"]] for r in results)
    assert [c["index"] for c in job["result"]["cases"]] == list(range(6))


def test_failed_and_cancelled_jobs_carry_their_status_as_outcome(client, auth):
    token = auth.token_for("alice")
    failed = run_job(client, token, "simulate", {"steps": 3, "interval": 0, "fail_at": 2})
    assert failed["outcome"] == "failed"
    headers = auth.headers(token)
    running = client.post("/api/jobs", json={"kind": "simulate", "params": {"steps": 500}}, headers=headers)
    job_id = running.get_json()["job"]["id"]
    assert running.get_json()["job"]["outcome"] is None
    client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert finished_job(client, auth, token, job_id)["outcome"] == "cancelled"


def test_an_import_rejecting_more_rows_than_allowed_completes_with_failures(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"city,amount\nParis,1\nLyon,x\nNice,y\n", "s.csv", "s")
    schema = {"amount": "integer"}
    within = run_job(
        client, token, "data_import", {"upload_id": "s", "dataset": "a", "schema": schema, "max_rejected_rows": 2}
    )
    assert (within["result"]["rejected_rows"], within["outcome"]) == (2, "succeeded")
    beyond = run_job(
        client, token, "data_import", {"upload_id": "s", "dataset": "b", "schema": schema, "max_rejected_rows": 1}
    )
    assert (beyond["status"], beyond["outcome"]) == ("completed", "failures")


def test_an_unknown_upload_is_refused_at_submit_naming_the_field(client, auth):
    token = auth.token_for("alice")
    params = {"upload_id": "nope", "dataset": "d"}
    response = client.post("/api/jobs", json={"kind": "data_import", "params": params}, headers=auth.headers(token))
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"path": "params.upload_id"}


def test_an_unknown_test_case_is_refused_at_submit_naming_the_field(client, auth):
    token = auth.token_for("alice")
    params = {"test_case_id": 4242}
    response = client.post("/api/jobs", json={"kind": "api_test", "params": params}, headers=auth.headers(token))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "unknown_reference"
    assert response.get_json()["error"]["details"] == {"path": "params.test_case_id"}
