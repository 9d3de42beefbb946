"""One process under load, real server: many subscribers of one chatty job, many jobs
logging at once. What must hold is exactness (every client ends with the database's
state) and that nobody else waits (no lock errors, no 5xx, pings answered quickly)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import wait_for

from .clients import durable_messages
from .conftest import ENGINES
from .plain_ws import (
    KindsServer,
    connect,
    is_final_status,
    send_json,
    socketio_connect,
    socketio_emit,
    socketio_next,
    start_server,
)
from .probes import PingProbe, p99

#: Durable events of the fan-out job: pending, running, 997 lines, completed.
LINES = 997
SUBSCRIBERS = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    yield from start_server(tmp_path_factory.mktemp("load"), MAX_CONCURRENT_JOBS="50")


async def plain_subscriber(server: KindsServer, token: str, job_id: int, subscribed: list[int]) -> list[dict]:
    """A ``/ws`` client that subscribes with replay and keeps every message, in wire order."""
    async with await connect(server, "/ws", token, ping_interval=None, max_size=None) as ws:
        await send_json(ws, {"type": "subscribe", "job_id": job_id, "last_seq": 0})
        received: list[dict] = []
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "subscribed":
                subscribed.append(1)
                continue
            received.append(message)
            if is_final_status(message):
                return received
    raise AssertionError("closed before the end")


async def socketio_subscriber(server: KindsServer, token: str, job_id: int, subscribed: list[int]) -> list[dict]:
    """The same over Socket.IO."""
    ws, connected = await socketio_connect(server, token, ping_interval=None, max_size=None)
    async with ws:
        assert "sid" in connected, connected
        await socketio_emit(ws, "subscribe", {"job_id": job_id, "last_seq": 0}, ack_id=1)
        received: list[dict] = []
        while True:
            event, payload = await socketio_next(ws, 60)
            if event == "ack":
                assert payload[1][0]["ok"] is True, payload
                subscribed.append(1)
            elif isinstance(payload, dict) and payload.get("job_id") == job_id:
                received.append(payload)
                if is_final_status(payload):
                    return received


def test_a_thousand_events_reach_fifty_subscribers_contiguous_and_equal_to_the_database(server, tmp_path: Path):
    """Half Socket.IO, half plain WebSocket: each one's durable messages are the stored
    events exactly and in order (1..last_seq, no gap, no duplicate), its last progress
    the snapshot's."""
    token = server.login("alice")
    gate = tmp_path / "go"
    job = server.submit(token, "test_chatty", lines=LINES, size=100, interval=0.004, gate=str(gate))

    async def scenario() -> list[list[dict]]:
        subscribed: list[int] = []
        tasks = [
            asyncio.create_task(subscriber(server, token, job["id"], subscribed))
            for subscriber in (socketio_subscriber, plain_subscriber)
            for _ in range(SUBSCRIBERS // 2)
        ]
        while len(subscribed) < len(tasks) and not any(task.done() for task in tasks):
            await asyncio.sleep(0.05)
        gate.touch()  # everyone is subscribed: the events go out live
        return await asyncio.wait_for(asyncio.gather(*tasks), 120)

    clients = asyncio.run(scenario())
    snapshot = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
    stored = server.api("GET", f"/api/jobs/{job['id']}/events?limit=1000", token).json()["events"]
    assert snapshot["status"] == "completed" and snapshot["last_seq"] == LINES + 3 == len(stored)
    expected = durable_messages(stored)
    for received in clients:
        assert durable_messages(received) == expected  # contiguous 1..1000, each one as stored
        progress = [m["data"] for m in received if m["type"] == "job_progress"]
        assert progress[-1] == {k: v for k, v in snapshot["progress"].items() if k != "type"}


@pytest.mark.skipif(ENGINES != "sqlite", reason="the single-writer engine is the one at risk")
def test_fifty_jobs_logging_every_step_on_sqlite_lock_nothing_and_keep_pings_fast(server):
    """Fifty writers at once on one SQLite file: no ``database is locked``, no 5xx on the
    REST reads meanwhile, every job complete with contiguous seqs, a bystander's p99 < 100 ms."""
    alice, bob = server.login("alice"), server.login("bob")
    probe = PingProbe(server, bob)
    statuses: list[int] = []
    reading = True

    def read_meanwhile() -> None:  # another user's REST reads while the writers write
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {bob}"
        while reading:
            statuses.append(session.get(server.url + "/api/jobs?limit=5", timeout=30).status_code)
            time.sleep(0.05)

    reader = threading.Thread(target=read_meanwhile, daemon=True)
    reader.start()
    time.sleep(0.3)
    started = time.monotonic()
    jobs = [server.submit(alice, steps=30, interval=0.05, log_every=1) for _ in range(50)]

    def all_final() -> list[dict[str, Any]] | None:
        listing = server.api("GET", "/api/jobs?limit=50", alice).json()["jobs"]
        return listing if all(j["status"] in ("completed", "failed", "cancelled") for j in listing) else None

    finals = wait_for(all_final, timeout=90, interval=0.25)
    took = time.monotonic() - started
    reading = False
    reader.join(35)
    round_trips = probe.stop()

    assert sorted(j["id"] for j in finals) == sorted(j["id"] for j in jobs)
    assert all(j["status"] == "completed" for j in finals), [j["error"] for j in finals if j["error"]]
    for job in jobs[:: len(jobs) // 5]:  # a sample: every step's line, in order
        events = server.api("GET", f"/api/jobs/{job['id']}/events", alice).json()["events"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert sum(e["type"] == "job_log" for e in events) >= 30
    assert statuses and all(status < 500 for status in statuses), sorted(set(statuses))
    log = server.log_path.read_text(errors="replace")
    assert "database is locked" not in log and "Traceback" not in log
    assert len(round_trips) > 20 and p99(round_trips) < 0.1, (f"{took:.1f} s", round_trips[-10:])


def test_a_job_that_never_sleeps_does_not_hold_the_loop(server):
    """A ``simulate`` with ``interval`` 0 is a tight CPU loop of progress and log calls:
    it yields on its own (``ctx.progress`` and ``ctx.log`` yield once it has held the loop
    a few milliseconds), so another user's pings stay fast while it runs."""
    alice, bob = server.login("alice"), server.login("bob")
    probe = PingProbe(server, bob)
    time.sleep(0.3)
    job = server.submit(alice, steps=200_000, interval=0, log_every=1000)

    def finished() -> bool:
        return server.api("GET", f"/api/jobs/{job['id']}", alice).json()["job"]["status"] == "completed"

    wait_for(finished, timeout=120, interval=0.25)
    round_trips = probe.stop()
    assert len(round_trips) > 20 and p99(round_trips) < 0.1, round_trips[-10:]
