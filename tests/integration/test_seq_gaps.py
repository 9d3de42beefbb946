"""A durable event lost in transit: clients notice the gap in seqs and fetch it again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import HeraldClient

from .plain_ws import KindsServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    yield from start_server(tmp_path_factory.mktemp("gaps"))


def test_the_python_client_fetches_an_event_that_never_arrived(server, tmp_path: Path):
    token = server.login("alice")
    client = HeraldClient(server.url, token=token)
    gate = tmp_path / "go"
    job = client.submit("test_lost_emit", {"lines": 14, "lose": 10, "interval": 0.05, "gate": str(gate)})
    seqs, lines = [], []
    for message in client.events(job["id"], timeout=60):
        if message["type"] == "job_status" and message["data"]["status"] == "running":
            gate.touch()  # subscribed and live: now the lines go out, one of them lost
        if message.get("seq") is not None:
            seqs.append(message["seq"])
        if message["type"] == "job_log":
            lines.append(message["data"]["message"])
    stored = server.api("GET", f"/api/jobs/{job['id']}/events", token).json()["events"]
    assert seqs == [event["seq"] for event in stored] == list(range(1, len(stored) + 1))
    assert "line 10 (never sent live)" in lines
    assert lines == [f"line {n}" if n != 10 else "line 10 (never sent live)" for n in range(1, 15)]
