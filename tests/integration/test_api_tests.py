"""API test cases on the real server: jobs under eventlet/gevent, batches, and ``flask watch``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.client import HeraldClient
from tests.helpers import wait_for
from tests.target_service import TargetService, gated_case_yaml, login_case_yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def target() -> Iterator[TargetService]:
    service = TargetService().start()
    yield service
    service.stop()


def create_case(server, token: str, text: str) -> int:
    response = server_request(server, token, "POST", "/api/test-cases", data=text)
    assert response.status_code == 201, response.text
    return int(response.json()["test_case"]["id"])


def server_request(server, token: str, method: str, path: str, **kwargs: Any):
    import requests

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"}
    return requests.request(method, server.url + path, headers=headers, timeout=30, **kwargs)


def finished(server, token: str, job_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]
        return job if job["status"] in {"completed", "failed", "cancelled"} else None

    return wait_for(done, timeout=90, interval=0.2)


def test_api_test_job_runs_on_the_real_server_and_stores_results(server, target):
    token = server.login("alice")
    case_id = create_case(server, token, login_case_yaml(target.url))
    job = server.submit(token, "api_test", test_case_id=case_id)
    done = finished(server, token, job["id"])
    assert done["status"] == "completed" and done["result"]["status"] == "failed"
    assert [s["status"] for s in done["result"]["steps"]] == ["passed", "passed", "passed", "failed"]
    events = server.api("GET", f"/api/jobs/{job['id']}/events", token).json()["events"]
    types = [e["type"] for e in events if e["type"] != "job_status"]
    assert types[0] == "test_start" and types[-1] == "test_complete"
    results = server.api("GET", f"/api/test-cases/{case_id}/results", token).json()["results"]
    assert results[0]["job_id"] == job["id"] and results[0]["steps"][2]["retries"] == 1


def test_batch_on_the_real_server_completes_with_counts_that_add_up(server, target):
    token = server.login("alice")
    target.gate.set()
    ids = [create_case(server, token, gated_case_yaml(target.url, f"case {n}")) for n in range(6)]
    batch = server.submit(token, "batch_execution", test_case_ids=ids, concurrency=3)
    done = finished(server, token, batch["id"])
    assert done["status"] == "completed"
    assert done["counts"] == {
        "success_count": 6,
        "failed_count": 0,
        "running_count": 0,
        "pending_count": 0,
        "total_count": 6,
    }
    events = server.api("GET", f"/api/jobs/{batch['id']}/events", token).json()["events"]
    for counts in (e["data"] for e in events if e["type"] == "job_counts"):
        assert sum(counts[k] for k in ("success_count", "failed_count", "running_count", "pending_count")) == 6


def test_watch_shows_the_job_finishing(server, target):
    token = server.login("alice")
    case_id = create_case(server, token, gated_case_yaml(target.url))
    job = HeraldClient(server.url, token=token).submit("api_test", {"test_case_id": case_id})
    env = {**os.environ, "HERALD_ENV": "testing", "HERALD_TOKEN": token}
    env.pop("SOCKETIO_ASYNC_MODE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "watch", str(job["id"]), "--server", server.url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]["status"] == "running")
        target.gate.set()  # let the case finish while watch follows it
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = output.decode()
    assert proc.returncode == 0, text
    assert "status: running" in text and "status: completed" in text
    assert "test_complete: status=passed" in text
    assert text.rstrip().endswith(f"job {job['id']} completed")


def test_client_events_replay_everything_for_a_finished_job(server, target):
    token = server.login("alice")
    target.gate.set()
    client = HeraldClient(server.url)
    client.login("alice", "password123")
    case_id = create_case(server, token, gated_case_yaml(target.url))
    job = client.submit("api_test", {"test_case_id": case_id})
    finished(server, token, job["id"])
    seqs = [m["seq"] for m in client.events(job["id"], timeout=60) if m["seq"] is not None]
    assert seqs == list(range(1, len(seqs) + 1))
    resumed = [m["seq"] for m in client.events(job["id"], after=seqs[-3], timeout=60) if m["seq"] is not None]
    assert resumed == seqs[-2:]


def test_client_events_reconnect_and_replay_without_gap_or_duplicate(server, monkeypatch):
    token = server.login("alice")
    sockets: list[Any] = []
    original = HeraldClient._socket

    def recording_socket() -> Any:
        sio, inbox = original()
        sockets.append(sio)
        return sio, inbox

    monkeypatch.setattr(HeraldClient, "_socket", staticmethod(recording_socket))
    client = HeraldClient(server.url, token=token)
    job = client.submit("simulate", {"steps": 40, "interval": 0.05, "log_every": 2})
    seqs: list[int] = []
    for message in client.events(job["id"], timeout=90):
        if message["seq"] is None:
            continue
        seqs.append(message["seq"])
        if len(seqs) == 4:
            sockets[0].disconnect()  # the connection drops mid-job
    assert len(sockets) >= 2  # it reconnected
    assert seqs == list(range(1, len(seqs) + 1))  # and missed nothing, repeated nothing
    assert server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]["last_seq"] == seqs[-1]


def test_batch_of_20_emits_seed_000_updates_whose_counts_always_add_up(server, target):
    import socketio

    token = server.login("alice")
    target.gate.set()
    ids = []
    for n in range(20):
        text = gated_case_yaml(target.url, f"case {n}")
        if n % 4 == 0:
            text = text.replace("eq: [$.count, 3]", "eq: [$.count, 99]")  # these cases fail
        ids.append(create_case(server, token, text))
    updates: list[dict[str, Any]] = []
    client = socketio.Client(reconnection=False)
    client.on("batch_execution_update", updates.append)
    client.connect(server.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        batch = server.submit(token, "batch_execution", test_case_ids=ids, concurrency=4)
        ack = client.call("subscribe_batch", {"batch_execution_id": batch["id"]}, timeout=10)
        assert ack["ok"] is True
        wait_for(lambda: updates and updates[-1]["data"]["status"] in {"completed", "failed"}, timeout=120)
    finally:
        client.disconnect()
    keys = ("success_count", "failed_count", "running_count", "pending_count")
    for update in updates:
        assert update["batch_execution_id"] == batch["id"]
        data = update["data"]
        if data["total_count"]:  # the very first state may predate the first counts
            assert sum(data[k] for k in keys) == data["total_count"] == 20
            assert data["running_count"] <= 4
    last = updates[-1]["data"]
    assert last["status"] == "completed"
    assert (last["success_count"], last["failed_count"], last["running_count"], last["pending_count"]) == (15, 5, 0, 0)


def test_kill_9_mid_batch_ends_it_and_its_cases_interrupted_and_clients_see_it(server, target):
    """The batch and the cases it was running are settled at restart; no seq is reused."""
    from tests.integration.clients import Recorder, kill_restart_and_check_interrupted

    token = server.login("alice")
    ids = [create_case(server, token, gated_case_yaml(target.url, f"case {n}")) for n in range(3)]
    watcher = Recorder(server, token)
    batch = server.submit(token, "batch_execution", test_case_ids=ids, concurrency=2)
    assert watcher.client.call("subscribe", {"job_id": batch["id"], "last_seq": 0}, timeout=10)["ok"] is True

    def cases_running() -> bool:  # two cases wait at the gate, one is not started
        jobs = server.api("GET", "/api/jobs?kind=api_test", token).json()["jobs"]
        return len(jobs) == 2 and all(job["status"] == "running" for job in jobs)

    wait_for(cases_running, timeout=30, interval=0.05)
    wait_for(
        lambda: any(m["type"] == "job_counts" and m["data"]["running_count"] == 2 for m in watcher.of_job(batch["id"]))
    )
    token = kill_restart_and_check_interrupted(server, watcher, batch["id"])
    cases = server.api("GET", "/api/jobs?kind=api_test", token).json()["jobs"]
    assert [(job["status"], job["error"]["code"]) for job in cases] == [("failed", "interrupted")] * 2
    final = server.api("GET", f"/api/jobs/{batch['id']}", token).json()["job"]
    assert final["counts"] == {
        "success_count": 0,
        "failed_count": 2,
        "running_count": 0,
        "pending_count": 1,
        "total_count": 3,
    }
