"""REST test cases (YAML or JSON, owner-scoped), the api_test job, stored results, batches."""

from __future__ import annotations

from typing import Any

from tests.helpers import wait_for
from tests.target_service import login_case_yaml

YAML = {"Content-Type": "application/yaml"}


def create(client, auth, token, body: str | dict[str, Any]):
    if isinstance(body, str):
        return client.post("/api/test-cases", data=body, headers={**auth.headers(token), **YAML})
    return client.post("/api/test-cases", json=body, headers=auth.headers(token))


def finished_job(client, auth, token, job_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]
        return job if job["status"] in {"completed", "failed", "cancelled"} else None

    return wait_for(done, timeout=60, interval=0.1)


def events_of(client, auth, token, job_id: int) -> list[dict[str, Any]]:
    return client.get(f"/api/jobs/{job_id}/events", headers=auth.headers(token)).get_json()["events"]


def test_create_from_yaml_and_read_back(client, auth, target):
    token = auth.token_for("alice")
    response = create(client, auth, token, login_case_yaml(target.url))
    assert response.status_code == 201
    case = response.get_json()["test_case"]
    assert case["name"] == "user flow" and case["total_steps"] == 4
    assert case["source"] == login_case_yaml(target.url)
    listed = client.get("/api/test-cases", headers=auth.headers(token)).get_json()["test_cases"]
    assert [c["id"] for c in listed] == [case["id"]] and "source" not in listed[0]


def test_create_from_json_is_stored_as_yaml(client, auth):
    token = auth.token_for("alice")
    body = {"name": "j", "steps": [{"name": "a", "request": {"url": "http://localhost/x"}}]}
    case = create(client, auth, token, body).get_json()["test_case"]
    assert case["spec"] == body and case["source"].startswith("name: j\n")


def test_invalid_yaml_is_a_400_naming_the_line(client, auth):
    token = auth.token_for("alice")
    response = create(client, auth, token, "name: x\nsteps:\n  - name: a\n    reqest: {url: /}\n")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_test_case"
    assert error["details"]["line"] == 4 and error["details"]["path"] == "steps[0].reqest"


def test_update_and_delete(client, auth):
    token = auth.token_for("alice")
    case_id = create(
        client, auth, token, "name: a\nsteps: [{name: s, request: {url: 'http://localhost/'}}]\n"
    ).get_json()["test_case"]["id"]
    updated = client.put(
        f"/api/test-cases/{case_id}",
        data="name: b\nsteps: [{name: s, request: {url: 'http://localhost/'}}]\n",
        headers={**auth.headers(token), **YAML},
    )
    assert updated.status_code == 200 and updated.get_json()["test_case"]["name"] == "b"
    assert client.delete(f"/api/test-cases/{case_id}", headers=auth.headers(token)).status_code == 204
    assert client.get(f"/api/test-cases/{case_id}", headers=auth.headers(token)).status_code == 404


def test_another_users_case_is_not_found(client, auth):
    alice, bob = auth.token_for("alice"), auth.token_for("bob")
    case_id = create(
        client, auth, alice, "name: a\nsteps: [{name: s, request: {url: 'http://localhost/'}}]\n"
    ).get_json()["test_case"]["id"]
    for method in ("get", "put", "delete"):
        response = getattr(client, method)(f"/api/test-cases/{case_id}", json={}, headers=auth.headers(bob))
        assert response.status_code == 404
    response = client.post(
        "/api/jobs", json={"kind": "api_test", "params": {"test_case_id": case_id}}, headers=auth.headers(bob)
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "unknown_reference" and error["details"] == {"path": "params.test_case_id"}


def test_api_test_job_streams_seed_003_events_and_stores_the_result(client, auth, target):
    token = auth.token_for("alice")
    websocket = "  websocket: {send_logs: true, send_variables: true, send_progress: true}"
    case_id = create(client, auth, token, login_case_yaml(target.url, websocket=websocket)).get_json()["test_case"][
        "id"
    ]
    job_id = client.post(f"/api/test-cases/{case_id}/run", headers=auth.headers(token)).get_json()["job"]["id"]
    job = finished_job(client, auth, token, job_id)
    assert job["status"] == "completed"
    assert job["result"]["status"] == "failed" and (job["result"]["passed"], job["result"]["failed"]) == (3, 1)
    assert job["progress"]["type"] == "progress" and job["progress"]["percent"] == 100.0
    types = [e["type"] for e in events_of(client, auth, token, job_id)]
    assert types == [
        "job_status",
        "job_status",
        "test_start",
        "variable_update",
        *["step_start", "variable_update", "variable_update", "step_complete"],
        *["step_start", "step_complete"],
        *["step_start", "log", "step_complete"],
        *["step_start", "error", "step_complete"],
        "test_complete",
        "job_status",
    ]
    results = client.get(f"/api/test-cases/{case_id}/results", headers=auth.headers(token)).get_json()["results"]
    assert len(results) == 1 and results[0]["job_id"] == job_id and results[0]["status"] == "failed"
    flaky = results[0]["steps"][2]
    assert (flaky["name"], flaky["status"], flaky["retries"], flaky["response"]["status_code"]) == (
        "flaky",
        "passed",
        1,
        200,
    )
    assert results[0]["steps"][3]["assertions"][0]["passed"] is False


def test_batch_of_20_with_concurrency_4_keeps_counts_consistent(client, auth, target):
    token = auth.token_for("alice")

    def case_yaml(n: int) -> str:
        name, expected = ("bad", 500) if n % 5 == 0 else ("ok", 200)
        step = f"{{name: s, request: {{url: '{target.url}/items'}}, validate: [status_code: {expected}]}}"
        return f"name: {name} {n}\nsteps: [{step}]\n"

    ids = [create(client, auth, token, case_yaml(n)).get_json()["test_case"]["id"] for n in range(20)]
    response = client.post(
        "/api/jobs",
        json={"kind": "batch_execution", "params": {"test_case_ids": ids, "concurrency": 4}},
        headers=auth.headers(token),
    )
    batch_id = response.get_json()["job"]["id"]
    job = finished_job(client, auth, token, batch_id)
    assert job["status"] == "completed"
    events = events_of(client, auth, token, batch_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    counts = [e["data"] for e in events if e["type"] == "job_counts"]
    for c in counts:
        assert (
            c["success_count"] + c["failed_count"] + c["running_count"] + c["pending_count"] == c["total_count"] == 20
        )
        assert c["running_count"] <= 4
    assert counts[0] == {
        "success_count": 0,
        "failed_count": 0,
        "running_count": 0,
        "pending_count": 20,
        "total_count": 20,
    }
    assert counts[-1] == {
        "success_count": 16,
        "failed_count": 4,
        "running_count": 0,
        "pending_count": 0,
        "total_count": 20,
    }
    assert max(c["running_count"] for c in counts) >= 2  # cases really overlapped
    assert job["counts"] == counts[-1]
    case_results = [e["data"] for e in events if e["type"] == "case_result"]
    assert sorted(r["test_case_id"] for r in case_results) == sorted(ids)
    bad = [r for r in case_results if r["status"] == "failed"]
    assert len(bad) == 4 and all(r["name"].startswith("bad") for r in bad)
    assert bad[0]["steps"] == [
        {
            "name": "s",
            "status": "failed",
            "error": {"code": "assertion_failed", "message": "status_code: expected eq 500, got 200"},
        }
    ]
    children = client.get("/api/jobs?kind=api_test&limit=500", headers=auth.headers(token)).get_json()["jobs"]
    assert len(children) == 20 and all(c["parent_id"] == batch_id for c in children)


def test_batch_with_a_missing_case_is_refused_naming_its_position(client, auth):
    token = auth.token_for("alice")
    case_id = create(
        client, auth, token, "name: a\nsteps: [{name: s, request: {url: 'http://localhost/'}}]\n"
    ).get_json()["test_case"]["id"]
    response = client.post(
        "/api/jobs",
        json={"kind": "batch_execution", "params": {"test_case_ids": [case_id, 999]}},
        headers=auth.headers(token),
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error == {
        "code": "unknown_reference",
        "message": "params.test_case_ids[1]: test case 999 not found",
        "details": {"path": "params.test_case_ids[1]"},
    }


def test_disallowed_host_fails_the_step_with_host_not_allowed_and_sends_nothing(app, client, auth, target):
    app.config["API_TEST_ALLOWED_HOSTS"] = ["localhost", "::1"]
    token = auth.token_for("alice")
    case_id = create(client, auth, token, login_case_yaml(target.url)).get_json()["test_case"]["id"]
    job_id = client.post(f"/api/test-cases/{case_id}/run", headers=auth.headers(token)).get_json()["job"]["id"]
    job = finished_job(client, auth, token, job_id)
    assert job["result"]["status"] == "failed"
    result = client.get(f"/api/test-cases/{case_id}/results", headers=auth.headers(token)).get_json()["results"][0]
    assert result["steps"][0]["error"] == {
        "code": "host_not_allowed",
        "message": "host '127.0.0.1' is not allowed by API_TEST_ALLOWED_HOSTS",
    }
    assert result["steps"][0]["response"] is None
    assert target.hits == []
    errors = [e["data"] for e in events_of(client, auth, token, job_id) if e["type"] == "error"]
    assert errors[0]["error_type"] == "host_not_allowed"


def test_cancelling_a_batch_cancels_its_running_cases(client, auth, target):
    from tests.target_service import gated_case_yaml

    token = auth.token_for("alice")
    ids = [
        create(client, auth, token, gated_case_yaml(target.url, f"g{n}")).get_json()["test_case"]["id"]
        for n in range(3)
    ]
    response = client.post(
        "/api/jobs",
        json={"kind": "batch_execution", "params": {"test_case_ids": ids, "concurrency": 2}},
        headers=auth.headers(token),
    )
    batch_id = response.get_json()["job"]["id"]

    def running_children() -> list[dict[str, Any]]:
        jobs = client.get("/api/jobs?kind=api_test", headers=auth.headers(token)).get_json()["jobs"]
        return [j for j in jobs if j["status"] == "running"]

    wait_for(lambda: len(running_children()) == 2, timeout=30)
    assert client.post(f"/api/jobs/{batch_id}/cancel", headers=auth.headers(token)).status_code == 202
    assert finished_job(client, auth, token, batch_id)["status"] == "cancelled"  # children signalled first
    target.gate.set()  # the blocked requests return; the cases see the cancellation
    children = client.get("/api/jobs?kind=api_test", headers=auth.headers(token)).get_json()["jobs"]
    assert len(children) == 2  # the third case never started
    for child in children:
        assert finished_job(client, auth, token, child["id"])["status"] == "cancelled"
