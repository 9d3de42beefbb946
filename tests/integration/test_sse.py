"""Server-Sent Events against the real server: follow, drop and resume, end, refuse.

Each stream is read by ``tests.sse_client.StreamReader`` (``requests`` streaming, a
parser of the SSE format) in a thread; every check compares what arrived with the job's
stored history (``GET /api/jobs/<id>/events``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.helpers import wait_for
from tests.sse_client import Event, StreamReader

from .conftest import ServerProcess, launch

#: Stream tokens open streams for this long here (their expiry is tested).
TOKEN_TTL = 2
#: An idle stream's ping comes this often here (the default is 15 s).
HEARTBEAT = 0.3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from launch(
        tmp_path_factory.mktemp("sse"),
        STREAM_TOKEN_TTL_SECONDS=str(TOKEN_TTL),
        SSE_HEARTBEAT_SECONDS=str(HEARTBEAT),
        SSE_SEND_QUEUE="50",
        WEBSOCKET_SEND_TIMEOUT="5",
        WEBSOCKET_SEND_BUFFER="4096",  # a stalled reader fills the kernel's buffer at once
    )


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> str:
    return server.login("alice")


def stream_token(server: ServerProcess, token: str, **body: Any) -> requests.Response:
    return server.api("POST", "/api/stream-tokens", token, json=body)


def open_stream(server: ServerProcess, token: str, job_id: int, **headers: str) -> StreamReader:
    scoped = stream_token(server, token, job_id=job_id).json()["token"]
    return StreamReader(f"{server.url}/api/jobs/{job_id}/stream?token={scoped}", headers).start()


def durable(events: list[Event]) -> list[dict[str, Any]]:
    return [event.json() for event in events if event.id]


def test_a_stream_follows_a_job_to_its_end_with_every_event_once_in_order(server, alice):
    job = server.submit(alice, steps=40, interval=0.02, log_every=4)
    reader = open_stream(server, alice, job["id"])
    assert reader.status == 200
    assert reader.ended.wait(60), "the stream did not end after the final status"
    history = server.history(alice, job["id"])
    assert durable(reader.events) == history
    assert [event.id for event in reader.durable()] == [f"{job['id']}:{m['seq']}" for m in history]
    assert all(event.event == event.json()["type"] for event in reader.events)
    assert reader.events[0].event == "snapshot"
    ticks = [event for event in reader.events if event.event == "job_progress"]
    assert ticks and all(event.id is None for event in ticks)


def test_a_dropped_stream_resumes_from_last_event_id_without_gap_or_duplicate(server, alice):
    job = server.submit(alice, steps=80, interval=0.03, log_every=2)
    first = open_stream(server, alice, job["id"])
    wait_for(lambda: len(first.durable()) >= 5, timeout=30)
    first.close()  # a network failure mid-job
    seen = first.durable()
    time.sleep(0.3)  # the job goes on while the client is away
    second = open_stream(server, alice, job["id"], **{"Last-Event-ID": seen[-1].id or ""})
    assert second.status == 200
    assert second.ended.wait(60)
    history = server.history(alice, job["id"])
    assert durable(seen) + durable(second.events) == history
    assert second.events[0].event == "snapshot"


def test_a_reconnect_with_the_query_parameter_resumes_too(server, alice):
    job = server.submit(alice, steps=10, interval=0.01, log_every=1)
    last_seq = server.wait_ended(alice, job["id"])["last_seq"]
    scoped = stream_token(server, alice, job_id=job["id"]).json()["token"]
    reader = StreamReader(
        f"{server.url}/api/jobs/{job['id']}/stream?token={scoped}&last_event_id={job['id']}:{last_seq - 3}"
    ).start()
    assert reader.ended.wait(30)
    assert [event.json()["seq"] for event in reader.durable()] == [last_seq - 2, last_seq - 1, last_seq]


def test_a_reconnect_to_an_ended_job_that_has_everything_gets_204(server, alice):
    job = server.submit(alice, steps=3, interval=0.01)
    last_seq = server.wait_ended(alice, job["id"])["last_seq"]
    reader = open_stream(server, alice, job["id"], **{"Last-Event-ID": f"{job['id']}:{last_seq}"})
    assert reader.status == 204


def test_another_users_job_is_refused(server, alice):
    job = server.submit(alice, steps=3, interval=0.01)
    bob = server.login("bob")
    assert stream_token(server, bob, job_id=job["id"]).status_code == 404
    everything = stream_token(server, bob, all=True).json()["token"]
    refused = requests.get(f"{server.url}/api/jobs/{job['id']}/stream?token={everything}", timeout=10)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    with_header = requests.get(
        f"{server.url}/api/jobs/{job['id']}/stream", headers={"Authorization": f"Bearer {bob}"}, timeout=10
    )
    assert with_header.status_code == 404


def test_a_stream_token_opens_its_own_scope_only_and_only_until_it_expires(server, alice):
    first, second = server.submit(alice, steps=3, interval=0.01), server.submit(alice, steps=3, interval=0.01)
    scoped = stream_token(server, alice, job_id=first["id"]).json()["token"]
    other = requests.get(f"{server.url}/api/jobs/{second['id']}/stream?token={scoped}", timeout=10)
    assert other.status_code == 403 and other.json()["error"]["code"] == "token_scope"
    time.sleep(TOKEN_TTL + 0.5)
    expired = requests.get(f"{server.url}/api/jobs/{first['id']}/stream?token={scoped}", timeout=10)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"


def test_an_open_stream_outlives_its_stream_tokens_expiry(server, alice):
    job = server.submit(alice, steps=20, interval=0.2)
    reader = open_stream(server, alice, job["id"])
    assert reader.ended.wait(60)
    assert server.wait_ended(alice, job["id"])["status"] == "completed"
    assert durable(reader.events) == server.history(alice, job["id"])


def test_an_idle_stream_gets_heartbeat_comments(server, alice):
    scoped = stream_token(server, alice, all=True).json()["token"]
    reader = StreamReader(f"{server.url}/api/stream?all=1&token={scoped}").start()
    try:
        wait_for(lambda: "ping" in reader.comments, timeout=10)
    finally:
        reader.close()


def test_health_and_metrics_count_an_open_stream_as_sse(server, alice):
    scoped = stream_token(server, alice, all=True).json()["token"]
    reader = StreamReader(f"{server.url}/api/stream?all=1&token={scoped}").start()
    try:
        assert reader.status == 200
        counts = requests.get(f"{server.url}/health", timeout=10).json()["connections"]
        assert counts["sse"] >= 1 and counts["websocket"] == 0
        assert 'herald_connections{transport="sse"}' in requests.get(f"{server.url}/metrics", timeout=10).text
    finally:
        reader.close()


def test_the_all_stream_sees_a_job_created_after_it_opened(server, alice):
    scoped = stream_token(server, alice, all=True).json()["token"]
    reader = StreamReader(f"{server.url}/api/stream?all=1&token={scoped}").start()
    try:
        assert reader.status == 200
        job = server.submit(alice, steps=5, interval=0.01, log_every=1)
        server.wait_ended(alice, job["id"])
        history = server.history(alice, job["id"])
        wait_for(lambda: [m for m in durable(reader.events) if m["job_id"] == job["id"]] == history, timeout=20)
    finally:
        reader.close()


def test_the_all_stream_resumes_every_job_after_a_drop(server, alice):
    scoped = stream_token(server, alice, all=True).json()["token"]
    first = StreamReader(f"{server.url}/api/stream?all=1&token={scoped}").start()
    jobs = [server.submit(alice, steps=60, interval=0.03, log_every=2) for _ in range(2)]
    wait_for(lambda: len(first.durable()) >= 6, timeout=30)
    first.close()
    seen = first.durable()
    scoped = stream_token(server, alice, all=True).json()["token"]
    second = StreamReader(f"{server.url}/api/stream?all=1&token={scoped}", {"Last-Event-ID": seen[-1].id or ""})
    second.start()
    try:
        for job in jobs:
            server.wait_ended(alice, job["id"])
            history = server.history(alice, job["id"])

            def got(job_id: int = job["id"], history: list[dict[str, Any]] = history) -> bool:
                received = [m for m in durable(seen) + durable(second.events) if m["job_id"] == job_id]
                return received == history

            wait_for(got, timeout=20)
    finally:
        second.close()


def test_logout_ends_an_open_stream(server):
    token = server.login("alice")
    scoped = stream_token(server, token, all=True).json()["token"]
    reader = StreamReader(f"{server.url}/api/stream?all=1&token={scoped}").start()
    assert reader.status == 200
    assert server.api("POST", "/api/auth/logout", token).status_code == 200
    assert reader.ended.wait(10), "the stream outlived its session"
    assert [event.json()["code"] for event in reader.events if event.event == "error"] == ["token_revoked"]
    again = requests.get(f"{server.url}/api/stream?all=1&token={scoped}", timeout=10)
    assert again.status_code == 401 and again.json()["error"]["code"] == "token_revoked"


def test_a_stream_that_stops_reading_is_cut_off(server, alice):
    """A reader with a tiny receive window that never reads: the server's queue for it
    passes ``SSE_SEND_QUEUE`` and the stream is closed instead of growing."""
    # Long enough (4,000 steps of 2 ms) for the stream to be open while it logs: its events
    # must arrive live, not as the replay of a job that ended before the stream opened.
    job = server.submit(alice, steps=4000, interval=0.002, log_every=1)
    scoped = stream_token(server, alice, job_id=job["id"]).json()["token"]
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    raw.connect(("127.0.0.1", server.port))
    raw.sendall(f"GET /api/jobs/{job['id']}/stream?token={scoped} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        server.wait_ended(alice, job["id"])

        def dropped() -> bool:
            metrics = requests.get(server.url + "/metrics", timeout=10).text
            return 'herald_connections_dropped_total{transport="sse"}' in metrics

        wait_for(dropped, timeout=30)
        raw.settimeout(10)
        received = b""
        try:
            while chunk := raw.recv(65536):  # the rest of what the kernel held, then the end
                received += chunk
        except ConnectionResetError:
            pass
        assert b"job_status" in received and b'"status":"completed"' not in received
    finally:
        raw.close()
