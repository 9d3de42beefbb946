"""External producers in process: creating the job, reporting batches, idempotency by ``n``,
bounds with per-item errors, the token's scope, cancel, and expiry of a vanished producer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions


def create_external(client: FlaskClient, token: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/api/jobs", json={"kind": "external", "name": "nightly import", **body}, headers=AuthActions.headers(token)
    )
    assert response.status_code == 202, response.get_json()
    return dict(response.get_json())


def report(client: FlaskClient, producer: str, job_id: int, items: list[dict[str, Any]]) -> Any:
    return client.post(f"/api/jobs/{job_id}/report", json={"items": items}, headers=AuthActions.headers(producer))


def events(client: FlaskClient, token: str, job_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/jobs/{job_id}/events?limit=10000", headers=AuthActions.headers(token))
    assert response.status_code == 200
    return list(response.get_json()["events"])


def job_of(client: FlaskClient, token: str, job_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/jobs/{job_id}", headers=AuthActions.headers(token)).get_json()["job"])


@pytest.fixture
def alice(auth: AuthActions) -> str:
    return auth.token_for("alice")


def test_creating_an_external_job_gives_a_pending_job_and_a_producer_token(client, alice):
    created = create_external(client, alice, total=10)
    job = created["job"]
    assert job["kind"] == "external" and job["status"] == "pending"
    assert job["params"] == {"name": "nightly import", "total": 10}
    assert created["report_url"] == f"/api/jobs/{job['id']}/report"
    assert [e["data"]["status"] for e in events(client, alice, job["id"])] == ["pending"]


def test_name_and_total_belong_to_the_external_kind_only(client, alice):
    response = client.post("/api/jobs", json={"kind": "simulate", "name": "x"}, headers=AuthActions.headers(alice))
    assert response.status_code == 400 and response.get_json()["error"]["details"] == {"path": "name"}
    response = client.post("/api/jobs", json={"kind": "external"}, headers=AuthActions.headers(alice))
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "validation_error"


def test_a_batch_becomes_events_and_a_batch_sent_again_changes_nothing(client, alice):
    created = create_external(client, alice)
    job_id, producer = created["job"]["id"], created["producer_token"]
    batch = [
        {"n": 1, "type": "progress", "current": 1, "total": 4},
        {"n": 2, "type": "log", "message": "row 1 read"},
        {"n": 3, "type": "counts", "counts": {"rows": 1}},
        {"n": 4, "type": "progress", "current": 2},
    ]
    first = report(client, producer, job_id, batch)
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"applied": 4, "skipped": 0, "last_n": 4, "status": "running"}
    before = events(client, alice, job_id)
    assert [(e["type"], e["data"]) for e in before] == [
        ("job_status", {"status": "pending"}),
        ("job_status", {"status": "running"}),
        ("job_log", {"level": "info", "message": "row 1 read"}),
        ("job_counts", {"rows": 1}),
    ]
    again = report(client, producer, job_id, batch)
    assert again.get_json() == {"applied": 0, "skipped": 4, "last_n": 4, "status": "running"}
    assert events(client, alice, job_id) == before
    overlapping = report(client, producer, job_id, [*batch[2:], {"n": 5, "type": "log", "message": "row 2"}])
    assert overlapping.get_json() == {"applied": 1, "skipped": 2, "last_n": 5, "status": "running"}
    assert [e["data"] for e in events(client, alice, job_id)][len(before) :] == [{"level": "info", "message": "row 2"}]
    assert job_of(client, alice, job_id)["counts"] == {"rows": 1}


def test_a_progress_only_tail_counts_as_applied(client, alice):
    created = create_external(client, alice)
    job_id, producer = created["job"]["id"], created["producer_token"]
    assert report(client, producer, job_id, [{"n": 1, "type": "log", "message": "a"}]).status_code == 200
    tail = [{"n": 2, "type": "progress", "current": 5}, {"n": 3, "type": "progress", "current": 6}]
    assert report(client, producer, job_id, tail).get_json()["last_n"] == 3
    assert report(client, producer, job_id, tail).get_json() == {
        "applied": 0,
        "skipped": 2,
        "last_n": 3,
        "status": "running",
    }


def test_completing_with_a_result_ends_the_job_and_the_token_with_it(client, alice):
    created = create_external(client, alice)
    job_id, producer = created["job"]["id"], created["producer_token"]
    done = report(
        client,
        producer,
        job_id,
        [
            {"n": 1, "type": "result", "result": {"rows": 3}},
            {"n": 2, "type": "status", "status": "completed"},
        ],
    )
    assert done.get_json()["status"] == "completed"
    job = job_of(client, alice, job_id)
    assert job["status"] == "completed" and job["result"] == {"rows": 3} and job["outcome"] == "succeeded"
    final = events(client, alice, job_id)[-1]
    assert final["data"] == {"status": "completed", "result": {"rows": 3}}
    late = report(client, producer, job_id, [{"n": 3, "type": "log", "message": "too late"}])
    assert late.status_code == 409
    error = late.get_json()["error"]
    assert error["code"] == "job_finished" and error["details"] == {"status": "completed", "last_n": 2}


def test_a_failed_status_carries_the_producers_error(client, alice):
    created = create_external(client, alice)
    job_id, producer = created["job"]["id"], created["producer_token"]
    items = [{"n": 1, "type": "status", "status": "failed", "error": "ValueError: bad row 7"}]
    assert report(client, producer, job_id, items).status_code == 200
    job = job_of(client, alice, job_id)
    assert job["status"] == "failed" and job["error"] == {"code": "producer_failed", "message": "ValueError: bad row 7"}
    assert [e["data"]["status"] for e in events(client, alice, job_id)] == ["pending", "running", "failed"]


def test_bad_items_are_refused_one_by_one_and_nothing_is_applied(app, client, alice):
    app.config["PRODUCER_MAX_LINE_CHARS"] = 10
    created = create_external(client, alice)
    job_id, producer = created["job"]["id"], created["producer_token"]
    items = [
        {"n": 1, "type": "log", "message": "fine"},
        {"n": 2, "type": "log", "message": "x" * 11},
        {"n": 2, "type": "log", "message": "again"},
        {"n": 4, "type": "weather"},
        {"n": 5, "type": "status", "status": "completed"},
        {"n": 6, "type": "log", "message": "after"},
        "not an object",
    ]
    response = report(client, producer, job_id, items)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert [(d["index"], d["code"]) for d in error["details"]] == [
        (1, "line_too_long"),
        (2, "n_not_increasing"),
        (3, "unknown_type"),
        (5, "item_after_end"),
        (6, "invalid_item"),
    ]
    assert [e["type"] for e in events(client, alice, job_id)] == ["job_status"]
    assert report(client, producer, job_id, [{"n": 1, "type": "log", "message": "fine"}]).status_code == 200


def test_a_batch_over_the_limit_is_refused(app, client, alice):
    app.config["PRODUCER_BATCH_MAX_ITEMS"] = 3
    created = create_external(client, alice)
    items = [{"n": n, "type": "progress", "current": n} for n in range(1, 5)]
    response = report(client, created["producer_token"], created["job"]["id"], items)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "batch_too_large"


def test_the_producer_token_reports_into_its_job_only_and_reads_nothing(client, alice):
    first, second = create_external(client, alice), create_external(client, alice)
    producer = first["producer_token"]
    other = report(client, producer, second["job"]["id"], [{"n": 1, "type": "log", "message": "x"}])
    assert other.status_code == 401 and other.get_json()["error"]["code"] == "token_invalid"
    for path in (f"/api/jobs/{first['job']['id']}", f"/api/jobs/{first['job']['id']}/events", "/api/jobs"):
        response = client.get(path, headers=AuthActions.headers(producer))
        assert response.status_code == 401, path
        assert response.get_json()["error"]["code"] == "token_invalid"
    # The user's own access token is not a producer token either.
    own = report(client, alice, first["job"]["id"], [{"n": 1, "type": "log", "message": "x"}])
    assert own.status_code == 401


def test_a_producer_token_is_refused_on_socket_connect(app, client, alice):
    from app.extensions import socketio

    producer = create_external(client, alice)["producer_token"]
    refused = socketio.test_client(app, auth={"token": producer})
    assert not refused.is_connected()


def test_cancel_ends_an_external_job_at_once_and_the_producer_hears_it(client, alice):
    created = create_external(client, alice)
    job_id, producer = created["job"]["id"], created["producer_token"]
    assert report(client, producer, job_id, [{"n": 1, "type": "progress", "current": 1}]).status_code == 200
    cancelled = client.post(f"/api/jobs/{job_id}/cancel", headers=AuthActions.headers(alice))
    assert cancelled.status_code == 202 and cancelled.get_json()["job"]["status"] == "cancelled"
    heard = report(client, producer, job_id, [{"n": 2, "type": "progress", "current": 2}])
    assert heard.status_code == 409 and heard.get_json()["error"]["details"]["status"] == "cancelled"


def test_a_producer_that_vanished_is_failed_when_its_token_expires(app: Flask, client, alice):
    from app.jobs.producers import expire_producers
    from app.models import utcnow

    created = create_external(client, alice)
    job_id = created["job"]["id"]
    with app.app_context():
        assert expire_producers() == 0
        assert expire_producers(now=utcnow() + timedelta(days=2)) == 1
    job = job_of(client, alice, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "producer_expired"


def test_a_process_drops_the_progress_it_kept_of_a_job_idle_here(app: Flask, client, alice):
    import time

    from app.jobs.producers import IDLE_FORGET, forget_idle
    from app.realtime.pipeline import pipeline

    created = create_external(client, alice)
    job_id = created["job"]["id"]
    reported = report(client, created["producer_token"], job_id, [{"n": 1, "type": "progress", "current": 3}])
    assert reported.status_code == 200
    assert forget_idle() == 0
    assert forget_idle(now=time.monotonic() + IDLE_FORGET + 1) == 1
    assert pipeline.latest_progress(job_id) is None


def test_n_is_bounded_by_the_largest_integer_every_json_client_keeps(client, alice):
    created = create_external(client, alice)
    job_id, producer = created["job"]["id"], created["producer_token"]
    refused = report(client, producer, job_id, [{"n": 2**63 - 1, "type": "log", "message": "x"}])
    assert refused.status_code == 400
    assert refused.get_json()["error"]["details"][0]["code"] == "invalid_n"
    assert report(client, producer, job_id, [{"n": 2**53 - 2, "type": "log", "message": "x"}]).status_code == 200
    assert report(client, producer, job_id, [{"n": 2**53 - 1, "type": "log", "message": "y"}]).status_code == 200


def test_a_name_given_twice_with_two_values_is_refused(client, alice):
    body = {"kind": "external", "name": "a", "params": {"name": "b"}}
    response = client.post("/api/jobs", json=body, headers=AuthActions.headers(alice))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and error["details"] == {"path": "name"}
    same = client.post(
        "/api/jobs", json={**body, "params": {"name": "a", "total": 3}}, headers=AuthActions.headers(alice)
    )
    assert same.status_code == 202 and same.get_json()["job"]["params"] == {"name": "a", "total": 3}


def test_a_counts_key_too_long_is_refused_for_its_length(client, alice):
    created = create_external(client, alice)
    key = "k" * 65
    response = report(
        client, created["producer_token"], created["job"]["id"], [{"n": 1, "type": "counts", "counts": {key: 1}}]
    )
    assert response.status_code == 400
    message = response.get_json()["error"]["details"][0]["message"]
    assert "at most 64 characters" in message and "has 65" in message and "must be a number" not in message


def test_the_kinds_list_says_how_an_external_job_is_created(client, alice):
    kinds = client.get("/api/kinds", headers=AuthActions.headers(alice)).get_json()["kinds"]
    (external,) = [k for k in kinds if k["kind"] == "external"]
    assert external["submittable"] is False  # {kind, params} alone runs nothing: not on the New-job form
    assert 'POST /api/jobs {"kind": "external", "name"}' in external["description"]
