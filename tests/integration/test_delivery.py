"""The delivery design, by behaviour: what the event loop and the sockets must never do.

No timing asserts (``bench/`` measures speed): these fail when the design regresses —
Nagle back on accepted sockets, the loop waiting on a commit, a writer wake-up per delivery.
(Logging forcing no ticks: ``test_hub.test_tight_progress_loop_is_coalesced``.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import wait_for
from tests.integration.clients import Recorder

from .plain_ws import KindsServer, connect, is_final_status, recv_until, send_json, start_server
from .probes import PingProbe


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


def test_the_loop_answers_while_passwords_are_checked(server):
    """A login hashes the password (PBKDF2, ~0.3 s of CPU): on the loop it froze every
    socket of the process that long."""
    probe = PingProbe(server, server.login("bob"))
    time.sleep(0.2)
    started = time.monotonic()
    for _ in range(4):
        server.login("alice")
    took = time.monotonic() - started
    round_trips = probe.stop()
    assert len(round_trips) > 20 and max(round_trips) < max(0.1, took / 8), (took, round_trips[-5:])


@pytest.mark.eventlet_only
def test_a_fan_out_writes_frames_without_a_writer_wake_up_per_connection(server):
    """Each delivery used to be a queue put and a switch to that connection's writer."""
    token = server.login("alice")
    watchers = [Recorder(server, token) for _ in range(30)]
    for watcher in watchers:
        assert watcher.client.call("subscribe", {"all": True}, timeout=10)["ok"] is True
    before = requests.get(server.url + "/test/frame-stats", timeout=10).json()
    job = server.submit(token, steps=20, interval=0.02, log_every=1)
    for watcher in watchers:
        wait_for(lambda watcher=watcher: watcher.job_finished(job["id"]), timeout=30)
    after = requests.get(server.url + "/test/frame-stats", timeout=10).json()
    delivered = sum(len(watcher.of_job(job["id"])) for watcher in watchers)
    direct, queued = after["direct"] - before["direct"], after["queued"] - before["queued"]
    assert delivered >= 30 * 24  # every watcher: three statuses, 21 log lines (and ticks)
    assert direct + queued >= delivered
    # Only a packet that finds its connection busy (a ping queued, a frame still going
    # out) takes the queue: far from one wake-up per delivery.
    assert queued <= delivered // 10, (direct, queued, delivered)
    for watcher in watchers:
        watcher.close()


@pytest.mark.eventlet_only
def test_an_idle_socketio_connection_keeps_no_greenlet(server):
    """python-engineio kept three greenlets per connection (~8 KB each), and the request's
    own greenlet held the WSGI stack; the hub now watches an idle socket (hub_reader)."""
    token = server.login("alice")

    def live() -> int:
        return requests.get(server.url + "/test/greenlets", timeout=10).json()["greenlets"]

    before = live()
    watchers = [Recorder(server, token) for _ in range(40)]
    for watcher in watchers:  # a round trip each: connected, pinged, queue drained
        assert watcher.client.call("ping", {}, timeout=10)["ok"] is True
    during = live()
    for watcher in watchers:
        watcher.close()
    assert during - before <= 5, (before, during)  # none each, and a few in flight


@pytest.mark.eventlet_only
def test_a_connection_upgraded_from_polling_leaves_its_greenlets_too(server):
    """The upgrade's probe is answered in the request; then the hub watches the socket."""
    import socketio

    token = server.login("alice")

    def live() -> int:
        return requests.get(server.url + "/test/greenlets", timeout=10).json()["greenlets"]

    before = live()
    clients = []
    for _ in range(10):
        client = socketio.Client(reconnection=False)
        client.connect(server.url, auth={"token": token}, wait_timeout=10)  # polling, then WebSocket
        wait_for(lambda c=client: c.transport() == "websocket", timeout=10)
        client.eio.http.close()  # the polling's keep-alive connection kept a request greenlet
        clients.append(client)
    try:
        for client in clients:
            assert client.call("ping", {}, timeout=10)["ok"] is True
        assert live() - before <= 5, (before, live())
    finally:
        for client in clients:
            client.disconnect()


@pytest.mark.eventlet_only
def test_a_plain_websocket_fan_out_writes_frames_without_waking_each_sender(server):
    token = server.login("alice")
    job = server.submit(token, steps=20, interval=0.05, log_every=1)
    before = requests.get(server.url + "/test/frame-stats", timeout=10).json()

    async def watch() -> list[dict[str, Any]]:
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "subscribe", "job_id": job["id"]})
            return await recv_until(ws, is_final_status, timeout=60)

    async def scenario() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(watch() for _ in range(30)))

    results = asyncio.run(scenario())
    after = requests.get(server.url + "/test/frame-stats", timeout=10).json()
    assert all(messages[-1]["data"]["status"] == "completed" for messages in results)
    direct = after["plain_direct"] - before["plain_direct"]
    queued = after["plain_queued"] - before["plain_queued"]
    live = sum(len(messages) - 1 for messages in results)  # all but each ack
    assert direct + queued >= live
    assert queued <= (direct + queued) // 5, (direct, queued)


@pytest.mark.eventlet_only
def test_idle_connections_served_by_the_hub_outlive_many_ping_intervals(tmp_path):
    """Engine.IO pings and pongs (and the read timeout) keep working with no greenlet:
    a 1 s ping interval, 1 s timeout, 6 s idle — every connection still answers."""
    from .conftest import launch

    fixture = launch(tmp_path, PING_INTERVAL="1", PING_TIMEOUT="1")
    server = next(fixture)
    watchers: list[Recorder] = []
    try:
        token = server.login("alice")
        watchers = [Recorder(server, token) for _ in range(10)]
        time.sleep(6)
        assert all(w.client.connected for w in watchers)
        for watcher in watchers:
            assert watcher.client.call("ping", {}, timeout=10)["ok"] is True
    finally:
        for watcher in watchers:
            watcher.close()
        next(fixture, None)
