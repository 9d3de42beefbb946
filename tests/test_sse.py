"""Stream tokens, cancel tokens, CORS and the SSE wire format, in process (threading mode).

Live following, reconnects and heartbeats run against the real server in
``tests/integration/test_sse.py``; here a stream is read only for a job that has ended
(its body ends by itself).
"""

from __future__ import annotations

from typing import Any

import pytest

from app.realtime.sse import encode_event, parse_last_event_id
from tests.helpers import wait_for
from tests.sse_client import parse_events

ALLOWED = "http://widget.example"


@pytest.fixture
def alice(auth: Any) -> str:
    return str(auth.token_for("alice"))


def submit(client: Any, token: str, **params: Any) -> int:
    params = {"steps": 3, "interval": 0.01, **params}
    response = client.post("/api/jobs", json={"kind": "simulate", "params": params}, headers=_bearer(token))
    assert response.status_code == 202, response.get_json()
    return int(response.get_json()["job"]["id"])


def finished(client: Any, token: str, job_id: int) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        job = client.get(f"/api/jobs/{job_id}", headers=_bearer(token)).get_json()["job"]
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    return dict(wait_for(final, timeout=20))


def stream_token(client: Any, token: str, **body: Any) -> Any:
    return client.post("/api/stream-tokens", json=body, headers=_bearer(token))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_stream_token_is_scoped_to_the_job_asked_for(client, alice):
    job_id = submit(client, alice)
    answer = stream_token(client, alice, job_id=job_id).get_json()
    assert answer["scope"] == f"job:{job_id}" and answer["can_cancel"] is False and "cancel_token" not in answer
    assert answer["token"] and answer["expires_at"] > 0


def test_a_stream_token_wants_a_job_or_all(client, alice):
    assert stream_token(client, alice).status_code == 400
    assert stream_token(client, alice, job_id=1, all=True).status_code == 400
    assert stream_token(client, alice, all=True).get_json()["scope"] == "all"


def test_a_cancel_token_goes_with_a_job_not_with_all(client, alice):
    response = stream_token(client, alice, all=True, cancel=True)
    error = response.get_json()["error"]
    assert response.status_code == 400 and error["code"] == "validation_error" and "job_id" in error["message"]


@pytest.mark.parametrize("whose", ["another users", "unknown"])
def test_the_all_stream_refuses_a_last_event_id_of_a_job_not_yours(client, auth, alice, whose):
    bob = auth.token_for("bob")
    job_id = submit(client, bob) if whose == "another users" else 999_999
    token = stream_token(client, alice, all=True).get_json()["token"]
    response = client.get(f"/api/stream?all=1&token={token}", headers={"Last-Event-ID": f"{job_id}:1"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_last_event_id"


def test_the_all_stream_resumes_from_a_job_of_yours(client, alice):
    job_id = submit(client, alice)
    finished(client, alice, job_id)
    token = stream_token(client, alice, all=True).get_json()["token"]
    response = client.get(f"/api/stream?all=1&token={token}", headers={"Last-Event-ID": f"{job_id}:1"}, buffered=False)
    assert response.status_code == 200
    response.close()


def test_another_users_job_gets_no_stream_token(client, auth, alice):
    job_id = submit(client, alice)
    bob = auth.token_for("bob")
    response = stream_token(client, bob, job_id=job_id)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_a_stream_token_is_not_an_access_token(client, alice):
    token = stream_token(client, alice, all=True).get_json()["token"]
    response = client.get("/api/auth/me", headers=_bearer(token))
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "token_invalid"


def test_an_ended_job_streams_its_history_once_and_the_stream_ends(client, alice):
    job_id = submit(client, alice)
    finished(client, alice, job_id)
    token = stream_token(client, alice, job_id=job_id).get_json()["token"]
    response = client.get(f"/api/jobs/{job_id}/stream?token={token}")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"
    text = response.get_data(as_text=True)
    assert text.startswith("retry: ")
    events = parse_events(text)
    assert events[0].event == "snapshot" and events[0].id is None
    stored = client.get(f"/api/jobs/{job_id}/events", headers=_bearer(alice)).get_json()["events"]
    durable = [event for event in events if event.id is not None]
    assert [event.id for event in durable] == [f"{job_id}:{m['seq']}" for m in stored]
    assert [event.json() for event in durable] == stored
    assert [event.event for event in durable] == [m["type"] for m in stored]


def test_a_reconnect_after_the_last_event_of_an_ended_job_is_204(client, alice):
    job_id = submit(client, alice)
    last_seq = finished(client, alice, job_id)["last_seq"]
    token = stream_token(client, alice, job_id=job_id).get_json()["token"]
    response = client.get(f"/api/jobs/{job_id}/stream?token={token}", headers={"Last-Event-ID": f"{job_id}:{last_seq}"})
    assert response.status_code == 204
    behind = client.get(f"/api/jobs/{job_id}/stream?token={token}&last_event_id={job_id}:{last_seq - 1}")
    events = [event for event in parse_events(behind.get_data(as_text=True)) if event.id]
    assert [event.id for event in events] == [f"{job_id}:{last_seq}"]


def test_a_stream_token_opens_only_its_own_job(client, alice):
    first, second = submit(client, alice), submit(client, alice)
    token = stream_token(client, alice, job_id=first).get_json()["token"]
    response = client.get(f"/api/jobs/{second}/stream?token={token}")
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "token_scope"
    assert client.get(f"/api/stream?all=1&token={token}").status_code == 403


def test_an_expired_stream_token_is_refused(app, client, alice):
    job_id = submit(client, alice)
    app.config["STREAM_TOKEN_TTL_SECONDS"] = -1
    token = stream_token(client, alice, job_id=job_id).get_json()["token"]
    response = client.get(f"/api/jobs/{job_id}/stream?token={token}")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "token_expired"


def test_a_stream_token_dies_with_the_session_that_asked_for_it(client, alice):
    job_id = submit(client, alice)
    token = stream_token(client, alice, job_id=job_id).get_json()["token"]
    assert client.post("/api/auth/logout", headers=_bearer(alice)).status_code == 200
    response = client.get(f"/api/jobs/{job_id}/stream?token={token}")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "token_revoked"


def test_a_cancel_token_cancels_its_job_only(client, alice):
    job_id = submit(client, alice, steps=500, interval=0.05)
    other = submit(client, alice, steps=500, interval=0.05)
    answer = stream_token(client, alice, job_id=job_id, cancel=True).get_json()
    assert answer["can_cancel"] is True
    cancel = _bearer(answer["cancel_token"])
    assert client.post(f"/api/jobs/{other}/cancel", headers=cancel).status_code == 404
    assert client.get(f"/api/jobs/{job_id}/stream?token={answer['cancel_token']}").status_code == 401
    assert client.get(f"/api/jobs/{job_id}", headers=cancel).status_code == 401
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=cancel).status_code == 202
    assert finished(client, alice, job_id)["status"] == "cancelled"
    client.post(f"/api/jobs/{other}/cancel", headers=_bearer(alice))


def test_an_ended_job_offers_no_cancel(client, alice):
    job_id = submit(client, alice)
    finished(client, alice, job_id)
    answer = stream_token(client, alice, job_id=job_id, cancel=True).get_json()
    assert answer["can_cancel"] is False and "cancel_token" not in answer


def test_cors_answers_listed_origins_only(app, client, alice):
    app.config["CORS_ALLOWED_ORIGINS"] = [ALLOWED]
    job_id = submit(client, alice)
    preflight = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
    answer = client.options(f"/api/jobs/{job_id}/cancel", headers=preflight)
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in answer.headers
    other = client.options(f"/api/jobs/{job_id}/cancel", headers={**preflight, "Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Access-Control-Allow-Origin" not in client.options("/api/jobs", headers=preflight).headers
    token = stream_token(client, alice, job_id=job_id).get_json()["token"]
    refused = client.get(f"/api/jobs/{job_id}/stream?token={token}", headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "origin_forbidden"
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_a_durable_message_is_an_event_with_an_id_and_a_tick_is_not():
    durable = {"type": "job_log", "job_id": 4, "seq": 7, "timestamp": "t", "data": {"message": "a\nb"}}
    assert encode_event(durable).decode() == (
        'id: 4:7\nevent: job_log\ndata: {"type":"job_log","job_id":4,"seq":7,"timestamp":"t",'
        '"data":{"message":"a\\nb"}}\n\n'
    )
    tick = {"type": "job_progress", "job_id": 4, "seq": None, "timestamp": "t", "data": {}}
    assert encode_event(tick).decode().startswith("event: job_progress\ndata: ")


@pytest.mark.parametrize(
    ("raw", "parsed"), [(None, None), ("", None), ("4:7", (4, 7)), ("7", (None, 7)), ("4:0", (4, 0))]
)
def test_last_event_id_is_job_colon_seq_or_a_seq(raw, parsed):
    assert parse_last_event_id(raw) == parsed


@pytest.mark.parametrize("raw", ["x", "4:", "0:3", "4:-1", "4:99999999999999999999", "a:b"])
def test_a_malformed_last_event_id_is_refused(raw):
    with pytest.raises(ValueError):
        parse_last_event_id(raw)


def test_streams_count_against_the_users_connection_cap(client, alice, monkeypatch):
    from app.realtime.limits import UserConnections

    # A cap of its own: sessions other tests left in the process's table do not count here.
    monkeypatch.setattr("app.realtime.sse.user_connections", UserConnections(2))
    token = stream_token(client, alice, all=True).get_json()["token"]
    opened = [client.get(f"/api/stream?all=1&token={token}", buffered=False) for _ in range(2)]
    try:
        assert [response.status_code for response in opened] == [200, 200]
        refused = client.get(f"/api/stream?all=1&token={token}")
        assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "too_many_connections"
    finally:
        for response in opened:
            response.close()
    reopened = client.get(f"/api/stream?all=1&token={token}", buffered=False)
    assert reopened.status_code == 200
    reopened.close()


def test_a_stream_ends_with_an_error_event_when_its_session_expires(app, client, auth):
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = 2
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.1
    token = auth.token_for("carol")
    scoped = stream_token(client, token, all=True).get_json()["token"]
    response = client.get(f"/api/stream?all=1&token={scoped}", buffered=False)
    body = b"".join(response.response)  # ends by itself once the session's token expires
    response.close()
    errors = [event for event in parse_events(body.decode()) if event.event == "error"]
    assert [event.json()["code"] for event in errors] == ["token_expired"]
