"""Operator signals on the real server: ``/metrics`` moves during a job, JSON logs parse,
no token reaches the log, ``/health`` and ``/ready`` answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio
import websocket
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import wait_for
from tests.integration.clients import Recorder

from .conftest import ServerProcess, launch

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: ServerProcess) -> Samples:
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


def job_status(server: ServerProcess, token: str, job_id: int) -> str:
    return str(server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]["status"])


def test_metrics_scraped_during_a_job_show_the_counters_move(server):
    token = server.login("alice")
    before = scrape(server)
    watcher = Recorder(server, token)
    try:
        job = server.submit(token, steps=60, interval=0.05, log_every=2)
        ack = watcher.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)
        assert ack["ok"] is True
        wait_for(lambda: len(watcher.of_type("job_log", job["id"])) >= 3, timeout=20)
        during = wait_for(
            lambda: (s := scrape(server)) and total(s, "herald_jobs", status="running", kind="simulate") == 1 and s,
            timeout=10,
        )
        assert job_status(server, token, job["id"]) == "running", "the job ended before the scrape"
        for counter in (
            "herald_events_committed_total",
            "herald_commit_seconds_count",
            "herald_publish_seconds_count",
            "herald_progress_ticks_total",
        ):
            assert total(during, counter) > total(before, counter), counter
        assert total(during, "herald_messages_delivered_total", transport="socketio") > total(
            before, "herald_messages_delivered_total", transport="socketio"
        )
        assert total(during, "herald_messages_published_total", kind="durable") > total(
            before, "herald_messages_published_total", kind="durable"
        )
        assert total(during, "herald_resumes_total", result="complete") == 1
        assert total(during, "herald_connections", transport="socketio") == 1
        assert total(during, "herald_subscriptions", transport="socketio") == 1
        assert total(during, "herald_database_up") == 1
        wait_for(lambda: watcher.job_finished(job["id"]), timeout=30)
    finally:
        watcher.close()
    after = wait_for(
        lambda: (s := scrape(server)) and total(s, "herald_connections", transport="socketio") == 0 and s, timeout=10
    )
    assert total(after, "herald_events_committed_total") > total(during, "herald_events_committed_total")
    assert total(after, "herald_messages_delivered_total") > total(during, "herald_messages_delivered_total")
    assert total(after, "herald_subscriptions") == 0
    assert total(after, "herald_jobs", status="completed", kind="simulate") == 1
    assert total(after, "herald_scrape_errors_total") == 0


def test_health_is_liveness_and_ready_is_readiness(server):
    health = requests.get(server.url + "/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = requests.get(server.url + "/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


@pytest.fixture
def json_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server writing JSON lines at DEBUG (so Socket.IO's polling requests are logged too)."""
    yield from launch(tmp_path, LOG_FORMAT="json", LOG_LEVEL="DEBUG")


#: Written by Python's warnings module when ``wsgi.py`` imports eventlet, before the app
#: (and its logging) exists; it ends with the source line it points at.
WARNING_END = "  import eventlet"


def log_entries(log_text: str) -> list[dict[str, Any]]:
    """Every line the server wrote once logging was set up, parsed (fails on one that is not JSON)."""
    lines = log_text.splitlines()
    if WARNING_END in lines:
        lines = lines[lines.index(WARNING_END) + 1 :]
    entries = []
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys(), line
        entries.append(entry)
    return entries


def test_json_log_lines_parse_and_never_hold_the_token(json_server):
    server = json_server
    token = server.login("alice")
    assert server.api("GET", "/api/jobs", token).status_code == 200  # Authorization header
    assert requests.get(f"{server.url}/api/jobs?token={token}&limit=1", timeout=10).status_code == 200
    sio = socketio.Client(reconnection=False)  # the token in the URL, over polling then WebSocket
    sio.connect(f"{server.url}?token={token}", wait_timeout=10)
    plain = websocket.create_connection(server.url.replace("http://", "ws://") + f"/ws?token={token}", timeout=10)
    try:
        job = server.submit(token, steps=5, interval=0.01)
        wait_for(lambda: job_status(server, token, job["id"]) == "completed", timeout=30)
    finally:
        sio.disconnect()
        plain.close()
    wait_for(lambda: '"path": "/ws?token=[redacted]"' in server.log_path.read_text(), timeout=10)
    server.stop()

    text = server.log_path.read_text()
    assert token not in text
    entries = log_entries(text)
    requests_logged = [e for e in entries if e["logger"] == "herald.request"]
    paths = {e["path"] for e in requests_logged}
    assert "/api/jobs?token=[redacted]&limit=1" in paths
    assert "/api/jobs" in paths and "/api/auth/login" in paths
    assert any(p.startswith("/socket.io/") and "token=[redacted]" in p for p in paths), paths
    plain_socket = next(e for e in requests_logged if e["path"] == "/ws?token=[redacted]")
    assert plain_socket["status"] == 101 and plain_socket["method"] == "GET"
    upgraded = [
        e for e in requests_logged if e["path"].startswith("/socket.io/") and "transport=websocket" in e["path"]
    ]
    assert upgraded and all(e["status"] == 101 for e in upgraded), upgraded
    for entry in requests_logged:
        assert isinstance(entry["duration_ms"], int | float) and entry["remote_addr"] == "127.0.0.1"
        assert entry["level"] == ("DEBUG" if entry["path"].startswith(("/socket.io/", "/health")) else "INFO")
