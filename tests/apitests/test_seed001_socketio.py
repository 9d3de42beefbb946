"""Seed 001 over Socket.IO: subscribe_test and the test_* events, adapters over the same pipeline."""

from __future__ import annotations

from typing import Any

from app.extensions import socketio
from tests.helpers import wait_for
from tests.target_service import login_case_yaml


def received(sio, collected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    collected.extend({"name": r["name"], **r["args"][0]} for r in sio.get_received() if r["args"])
    return collected


def create_case(client, auth, token, text: str) -> int:
    response = client.post(
        "/api/test-cases", data=text, headers={**auth.headers(token), "Content-Type": "application/yaml"}
    )
    return int(response.get_json()["test_case"]["id"])


def test_subscribe_test_streams_progress_status_and_completion(app, client, auth, target):
    token = auth.token_for("alice")
    case_id = create_case(client, auth, token, login_case_yaml(target.url))
    sio = socketio.test_client(app, auth={"token": token})
    job_id = client.post(f"/api/test-cases/{case_id}/run", headers=auth.headers(token)).get_json()["job"]["id"]
    ack = sio.emit("subscribe_test", {"test_id": job_id}, callback=True)
    assert ack["ok"] is True and ack["test_id"] == job_id
    collected: list[dict[str, Any]] = []
    wait_for(lambda: any(m["name"] == "test_completed" for m in received(sio, collected)), timeout=60)
    seed = [m for m in collected if m["name"].startswith("test_")]
    assert seed[0]["type"] == "test_status_update"  # the current state comes first
    assert all(m["test_id"] == job_id and m["data"]["test_id"] == job_id for m in seed)
    steps = [m["data"]["current_step"] for m in seed if m["type"] == "test_progress" and "step" in m["data"]]
    assert steps == sorted(steps) and steps[-1] == 4
    assert [m["data"]["status"] for m in seed if m["type"] == "test_status_update"][-1] == "completed"
    completed = next(m for m in seed if m["type"] == "test_completed")
    assert completed["data"]["success"] is False and completed["data"]["results"]["failed"] == 1
    errors = [m for m in seed if m["type"] == "test_error"]
    assert errors and errors[0]["data"]["error"]["error_type"] == "assertion_failed"


def test_subscribe_test_to_another_users_job_is_not_found(app, client, auth):
    alice, bob = auth.token_for("alice"), auth.token_for("bob")
    response = client.post("/api/jobs", json={"kind": "simulate", "params": {"steps": 1}}, headers=auth.headers(alice))
    job_id = response.get_json()["job"]["id"]
    sio = socketio.test_client(app, auth={"token": bob})
    ack = sio.emit("subscribe_test", {"test_id": job_id}, callback=True)
    assert ack == {"ok": False, "error": {"code": "not_found", "message": f"job {job_id} not found"}}
    errors = [r["args"][0] for r in sio.get_received() if r["name"] == "error"]
    assert errors and errors[-1]["code"] == "not_found"
    assert sio.is_connected()


def test_unsubscribe_test_stops_the_test_events(app, client, auth):
    token = auth.token_for("alice")
    response = client.post(
        "/api/jobs", json={"kind": "simulate", "params": {"steps": 30, "interval": 0.05}}, headers=auth.headers(token)
    )
    job_id = response.get_json()["job"]["id"]
    sio = socketio.test_client(app, auth={"token": token})
    sio.emit("subscribe_test", {"test_id": job_id}, callback=True)
    assert sio.emit("unsubscribe_test", {"test_id": job_id}, callback=True) == {"ok": True, "test_id": job_id}
    sio.get_received()
    wait_for(
        lambda: (
            client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]["status"] == "completed"
        ),
        timeout=30,
    )
    assert not [r for r in sio.get_received() if r["name"].startswith("test_")]
