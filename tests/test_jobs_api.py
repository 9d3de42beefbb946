"""REST jobs: submit, validate, read, history, cancel, ownership."""

from __future__ import annotations

from tests.helpers import wait_for


def submit(client, auth, token, kind="simulate", **params):
    return client.post("/api/jobs", json={"kind": kind, "params": params}, headers=auth.headers(token))


def job_status(client, auth, token, job_id):
    return client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]["status"]


def test_submit_returns_202_with_a_pending_or_running_job(client, auth):
    token = auth.token_for("alice")
    response = submit(client, auth, token, steps=2, interval=0)
    assert response.status_code == 202
    job = response.get_json()["job"]
    assert job["kind"] == "simulate" and job["status"] in {"pending", "running", "completed"}
    assert job["params"] == {"steps": 2, "interval": 0, "log_every": 10, "fail_at": None}


def test_job_completes_and_history_has_contiguous_seqs(client, auth):
    token = auth.token_for("alice")
    job_id = submit(client, auth, token, steps=20, interval=0, log_every=5).get_json()["job"]["id"]
    wait_for(lambda: job_status(client, auth, token, job_id) == "completed")
    events = client.get(f"/api/jobs/{job_id}/events", headers=auth.headers(token)).get_json()["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["data"] == {"status": "pending"}
    assert events[-1]["data"]["status"] == "completed"
    assert sum(1 for e in events if e["type"] == "job_log") == 1 + 4
    snapshot = client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]
    assert snapshot["last_seq"] == len(events)
    assert snapshot["progress"]["current"] == 20 and snapshot["progress"]["percent"] == 100.0


def test_events_after_returns_only_later_events(client, auth):
    token = auth.token_for("alice")
    job_id = submit(client, auth, token, steps=1, interval=0).get_json()["job"]["id"]
    wait_for(lambda: job_status(client, auth, token, job_id) == "completed")
    events = client.get(f"/api/jobs/{job_id}/events?after=2", headers=auth.headers(token)).get_json()["events"]
    assert events and all(e["seq"] > 2 for e in events)


def test_unknown_kind_is_a_400_naming_known_kinds(client, auth):
    token = auth.token_for("alice")
    response = submit(client, auth, token, kind="nope")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and "simulate" in error["message"]


def test_bad_params_are_a_400_with_the_path(client, auth):
    token = auth.token_for("alice")
    response = submit(client, auth, token, steps="many")
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["path"] == "params.steps"


def test_failing_job_records_its_error(client, auth):
    token = auth.token_for("alice")
    job_id = submit(client, auth, token, steps=5, interval=0, fail_at=3).get_json()["job"]["id"]
    wait_for(lambda: job_status(client, auth, token, job_id) == "failed")
    job = client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]
    assert job["error"] == {"code": "simulated_failure", "message": "simulated failure at step 3"}


def test_cancel_stops_a_running_job(client, auth):
    token = auth.token_for("alice")
    job_id = submit(client, auth, token, steps=1000, interval=0.05).get_json()["job"]["id"]
    wait_for(lambda: job_status(client, auth, token, job_id) == "running")
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=auth.headers(token)).status_code == 202
    wait_for(lambda: job_status(client, auth, token, job_id) == "cancelled")
    again = client.post(f"/api/jobs/{job_id}/cancel", headers=auth.headers(token))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "job_finished"


def test_jobs_beyond_the_concurrency_limit_wait_pending(app, client, auth):
    app.extensions["herald_runner"].max_concurrent = 1
    token = auth.token_for("alice")
    first = submit(client, auth, token, steps=100, interval=0.05).get_json()["job"]["id"]
    second = submit(client, auth, token, steps=1, interval=0).get_json()["job"]["id"]
    assert job_status(client, auth, token, second) == "pending"
    client.post(f"/api/jobs/{second}/cancel", headers=auth.headers(token))
    assert job_status(client, auth, token, second) == "cancelled"
    client.post(f"/api/jobs/{first}/cancel", headers=auth.headers(token))
    wait_for(lambda: job_status(client, auth, token, first) == "cancelled")


def test_another_users_job_is_not_found_everywhere(client, auth):
    alice = auth.token_for("alice")
    bob = auth.token_for("bob")
    job_id = submit(client, auth, alice, steps=1, interval=0).get_json()["job"]["id"]
    for method, path in [
        ("get", f"/api/jobs/{job_id}"),
        ("get", f"/api/jobs/{job_id}/events"),
        ("post", f"/api/jobs/{job_id}/cancel"),
    ]:
        response = getattr(client, method)(path, headers=auth.headers(bob))
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/jobs", headers=auth.headers(bob)).get_json()["jobs"] == []


def test_list_filters_by_status_and_kind(client, auth):
    token = auth.token_for("alice")
    job_id = submit(client, auth, token, steps=1, interval=0).get_json()["job"]["id"]
    wait_for(lambda: job_status(client, auth, token, job_id) == "completed")
    listed = client.get("/api/jobs?status=completed&kind=simulate", headers=auth.headers(token)).get_json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    assert client.get("/api/jobs?status=running", headers=auth.headers(token)).get_json()["jobs"] == []
    assert client.get("/api/jobs?status=bogus", headers=auth.headers(token)).status_code == 400


def test_kinds_lists_simulate_with_its_schema(client, auth):
    token = auth.token_for("alice")
    kinds = client.get("/api/kinds", headers=auth.headers(token)).get_json()["kinds"]
    simulate = next(k for k in kinds if k["kind"] == "simulate")
    assert simulate["schema"]["properties"]["steps"]["default"] == 20


def test_unknown_api_route_is_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_openapi_document_lists_the_routes(client):
    document = client.get("/api/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert "post" in document["paths"]["/api/jobs"]
    assert "/api/jobs/{job_id}/events" in document["paths"]


def test_health_reports_mode_and_connections(client):
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["async_mode"] == "threading"
    assert "socketio" in body["connections"]


def test_list_counts_by_status_and_pages_past_the_first_page(client, auth):
    token = auth.token_for("alice")
    for _ in range(3):
        submit(client, auth, token, steps=1, interval=0)
    headers = auth.headers(token)
    wait_for(lambda: client.get("/api/jobs?status=completed", headers=headers).get_json()["total"] == 3)
    first = client.get("/api/jobs?limit=2", headers=headers).get_json()
    assert len(first["jobs"]) == 2 and first["total"] == 3
    assert first["status_counts"]["completed"] == 3 and first["status_counts"]["failed"] == 0
    second = client.get("/api/jobs?limit=2&offset=2", headers=headers).get_json()
    assert len(second["jobs"]) == 1
    assert len({j["id"] for j in first["jobs"] + second["jobs"]}) == 3


def test_list_searches_by_id_and_params_and_keeps_children_under_their_parent(app, client, auth):
    token = auth.token_for("alice")
    headers = auth.headers(token)
    parent = submit(client, auth, token, steps=1, interval=0).get_json()["job"]["id"]
    with app.app_context():
        from app.extensions import db
        from app.jobs import service
        from app.models import User

        owner = db.session.query(User).filter_by(username="alice").one().id
        child = service.submit_job(owner, "simulate", {"steps": 7, "interval": 0}, parent_id=parent).id
    top = client.get("/api/jobs?top_level=true", headers=headers).get_json()
    assert [j["id"] for j in top["jobs"]] == [parent] and top["jobs"][0]["child_count"] == 1
    children = client.get(f"/api/jobs?parent_id={parent}", headers=headers).get_json()["jobs"]
    assert [j["id"] for j in children] == [child]
    assert [j["id"] for j in client.get(f"/api/jobs?q=%23{child}", headers=headers).get_json()["jobs"]] == [child]
    found = client.get('/api/jobs?q="steps": 7', headers=headers).get_json()["jobs"]
    assert [j["id"] for j in found] == [child]
    one = client.get(f"/api/jobs/{parent}", headers=headers).get_json()["job"]
    assert one["owner"] == "alice" and one["child_count"] == 1
