"""The delivery design, by behaviour: what the event loop and the sockets must never do.

No timing asserts (``bench/`` measures speed): these fail when the design regresses —
Nagle back on accepted sockets, the loop waiting on a commit, ticks forced by logging.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.clients import Recorder

from .plain_ws import KindsServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    yield from start_server(tmp_path_factory.mktemp("delivery"))


def test_accepted_sockets_have_nagle_off(server):
    """A Socket.IO ack is small writes: with Nagle on, the second waits for a delayed ACK."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        my_port = sock.getsockname()[1]
        request = (
            f"GET /test/socket-options?port={my_port} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(request.encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body) == {"nodelay": 1}


def test_the_loop_answers_while_a_group_commit_is_in_flight(server, tmp_path: Path):
    token = server.login("alice")
    rec = Recorder(server, token)
    marker, gate = tmp_path / "in-flight", tmp_path / "go"
    job = server.submit(token, "test_slow_commit", marker=str(marker), gate=str(gate))
    try:
        wait_for(marker.exists, timeout=20)
        # The job's log line is being committed and will stay so until the gate opens:
        # pings, reads and other users' sockets are served meanwhile.
        for _ in range(5):
            assert rec.client.call("ping", {"n": 1}, timeout=10)["ok"] is True
        snapshot = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
        assert snapshot["status"] == "running"
        events = server.api("GET", f"/api/jobs/{job['id']}/events", token).json()["events"]
        assert [e["type"] for e in events] == ["job_status", "job_status"]  # pending, running
    finally:
        gate.touch()
    final = wait_for(
        lambda: (j := server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"])["status"] == "completed" and j,
        timeout=20,
    )
    events = server.api("GET", f"/api/jobs/{job['id']}/events", token).json()["events"]
    assert [e["type"] for e in events] == ["job_status", "job_status", "job_log", "job_status"]
    assert final["result"] == {"seq": 3}
    rec.close()


def test_a_job_logging_every_ten_steps_still_ticks_at_most_once_per_interval(server):
    token = server.login("alice")
    rec = Recorder(server, token)
    rec.client.call("subscribe", {"all": True}, timeout=10)
    started = time.monotonic()
    job = server.submit(token, steps=100_000, interval=0, log_every=10)
    wait_for(lambda: rec.job_finished(job["id"]), timeout=180)
    duration = time.monotonic() - started
    messages = rec.of_job(job["id"])
    ticks = [m for m in messages if m["type"] == "job_progress"]
    logs = [m for m in messages if m["type"] == "job_log"]
    assert len(logs) == 10_001  # the opening line, then one every ten steps
    # PROGRESS_INTERVAL is 0.1 s: a durable event carries no tick of its own.
    assert 1 <= len(ticks) <= duration / 0.1 + 3
    assert ticks[-1]["data"]["current"] == 100_000
    rec.close()
