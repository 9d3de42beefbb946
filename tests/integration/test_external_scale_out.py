"""One external job reported into through two web processes at once (PostgreSQL + Redis):
the same batch sent to both at the same moment is applied once — the holder fence lets each
item through once and refuses its twin, whose report, sent again, finds it applied."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .cluster import Cluster
from .conftest import ServerProcess

pytestmark = [pytest.mark.eventlet_only, pytest.mark.scale_out]


@pytest.fixture
def cluster(tmp_path: Path, postgres_database: str) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, postgres_database)
    try:
        yield cluster
    finally:
        cluster.stop()


def send_until_taken(server: ServerProcess, producer: str, job_id: int, batch: list[dict[str, Any]]) -> dict[str, Any]:
    """What the Python client does: a racing report (409 report_conflict) is sent again."""
    while True:
        response = server.api("POST", f"/api/jobs/{job_id}/report", producer, json={"items": batch})
        if response.status_code == 409 and response.json()["error"]["code"] == "report_conflict":
            continue
        assert response.status_code == 200, response.text
        return dict(response.json())


def race(servers: list[ServerProcess], producer: str, job_id: int, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same batch sent to every server at the same moment; their answers."""
    start = threading.Barrier(len(servers))
    answers: list[dict[str, Any]] = []

    def send(server: ServerProcess) -> None:
        start.wait()
        answers.append(send_until_taken(server, producer, job_id, batch))

    threads = [threading.Thread(target=send, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def test_the_same_batch_sent_to_two_processes_at_once_is_applied_once(cluster: Cluster) -> None:
    web_a, web_b = cluster.web(), cluster.web()
    token = web_a.login("alice")
    created = web_a.api("POST", "/api/jobs", token, json={"kind": "external", "name": "raced"}).json()
    job_id, producer = created["job"]["id"], created["producer_token"]
    rounds = 25
    for k in range(rounds):
        batch = [
            {"n": 10 * k + 1, "type": "log", "message": f"round {k}"},
            {"n": 10 * k + 2, "type": "counts", "counts": {"round": k}},
            {"n": 10 * k + 3, "type": "progress", "current": k},
        ]
        answers = race([web_a, web_b], producer, job_id, batch)
        # Each answer accounts for the whole batch; what each applied depends on who won
        # (a report refused half-way is sent again and finds its items applied): the history
        # below is what must hold every item once.
        assert len(answers) == 2 and all(a["applied"] + a["skipped"] == 3 for a in answers), answers
        assert all(a["last_n"] == 10 * k + 3 for a in answers)
    events = requests.get(
        f"{web_b.url}/api/jobs/{job_id}/events?limit=10000", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"]["message"] for e in events if e["type"] == "job_log"] == [f"round {k}" for k in range(rounds)]
    assert [e["data"]["round"] for e in events if e["type"] == "job_counts"] == list(range(rounds))
    assert [e["data"]["status"] for e in events if e["type"] == "job_status"] == ["pending", "running"]
    assert cluster.job_row(job_id)["producer_seq"] == 10 * (rounds - 1) + 3


def test_a_pending_job_raced_by_two_processes_starts_running_once(cluster: Cluster) -> None:
    web_a, web_b = cluster.web(), cluster.web()
    token = web_a.login("alice")
    for _ in range(10):
        created = web_a.api("POST", "/api/jobs", token, json={"kind": "external", "name": "raced start"}).json()
        job_id, producer = created["job"]["id"], created["producer_token"]
        batch = [{"n": 1, "type": "progress", "current": 1}, {"n": 2, "type": "log", "message": "first"}]
        answers = race([web_a, web_b], producer, job_id, batch)
        assert len(answers) == 2 and all(a["applied"] + a["skipped"] == 2 for a in answers), answers
        events = web_b.api("GET", f"/api/jobs/{job_id}/events", token).json()["events"]
        assert [(e["type"], e["data"].get("status", e["data"].get("message"))) for e in events] == [
            ("job_status", "pending"),
            ("job_status", "running"),
            ("job_log", "first"),
        ]
