"""The hub end to end against the real server and the real python-socketio client."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.clients import Recorder
from tests.integration.conftest import KILLED_JOBS_SETTLE_WITHIN


def durable_seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if m["seq"] is not None]


def test_simulate_job_streams_in_seq_order_to_completed(server):
    token = server.login("alice")
    rec = Recorder(server, token)
    job = server.submit(token, steps=15, interval=0.03, log_every=5)
    ack = rec.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)
    assert ack["ok"] is True
    wait_for(lambda: rec.job_finished(job["id"]), timeout=20)
    messages = rec.of_job(job["id"])
    assert durable_seqs(messages) == list(range(1, len(durable_seqs(messages)) + 1))
    statuses = [m["data"]["status"] for m in messages if m["type"] == "job_status"]
    assert statuses == ["pending", "running", "completed"]
    progress = [m for m in messages if m["type"] == "job_progress"]
    assert progress and progress[-1]["data"]["current"] == 15 and progress[-1]["data"]["percent"] == 100.0
    assert all(m["seq"] is None and "status" not in m["data"] for m in progress)
    for m in messages:
        assert set(m) >= {"type", "job_id", "seq", "timestamp", "data"} and m["timestamp"].endswith("Z")
    rec.close()


def test_resubscribe_with_last_seq_gets_exactly_the_missed_events(server):
    token = server.login("alice")
    job = server.submit(token, steps=60, interval=0.03, log_every=2)
    first = Recorder(server, token)
    first.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)
    wait_for(lambda: len(durable_seqs(first.of_job(job["id"]))) >= 6)
    first.close()
    seen_before = durable_seqs(first.of_job(job["id"]))
    time.sleep(0.4)  # the job keeps publishing while nobody listens
    second = Recorder(server, token)
    second.client.call("subscribe", {"job_id": job["id"], "last_seq": seen_before[-1]}, timeout=10)
    wait_for(lambda: second.job_finished(job["id"]), timeout=30)
    after = second.of_job(job["id"])
    assert after[0]["seq"] == seen_before[-1] + 1  # the first missed one, not a later one
    combined = seen_before + durable_seqs(after)
    assert combined == list(range(1, len(combined) + 1))  # no gap, no duplicate
    assert any(m["type"] == "job_progress" for m in after)
    final = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
    assert combined[-1] == final["last_seq"]
    second.close()


def test_other_users_cannot_see_or_touch_a_job(server):
    alice, bob = server.login("alice"), server.login("bob")
    job = server.submit(alice, steps=20, interval=0.05)
    spy = Recorder(server, bob)
    assert spy.client.call("subscribe", {"all": True}, timeout=10)["ok"] is True
    ack = spy.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)
    assert ack["ok"] is False and ack["error"]["code"] == "not_found"
    assert server.api("GET", f"/api/jobs/{job['id']}", bob).status_code == 404
    assert server.api("POST", f"/api/jobs/{job['id']}/cancel", bob).status_code == 404
    assert server.api("GET", "/api/jobs", bob).json()["jobs"] == []
    owner = Recorder(server, alice)
    owner.client.call("subscribe", {"job_id": job["id"]}, timeout=10)
    wait_for(lambda: owner.job_finished(job["id"]), timeout=20)
    assert spy.of_job(job["id"]) == []
    spy.close()
    owner.close()


@pytest.mark.parametrize("log_every", [0, 10], ids=["progress only", "a log line every ten steps"])
def test_tight_progress_loop_is_coalesced(server, log_every):
    """A durable event carries no tick of its own: logging does not add ticks either."""
    token = server.login("alice")
    rec = Recorder(server, token)
    rec.client.call("subscribe", {"all": True}, timeout=10)
    started = time.monotonic()
    job = server.submit(token, steps=100_000, interval=0, log_every=log_every)
    wait_for(lambda: rec.job_finished(job["id"]), timeout=180)
    duration = time.monotonic() - started
    messages = rec.of_job(job["id"])
    progress = [m for m in messages if m["type"] == "job_progress"]
    # PROGRESS_INTERVAL is 0.1 s: about duration / interval ticks, never one per call.
    assert 1 <= len(progress) <= duration / 0.1 + 3
    assert progress[-1]["data"]["current"] == 100_000
    logs = [m for m in messages if m["type"] == "job_log"]
    assert len(logs) == 1 + (100_000 // log_every if log_every else 0)  # the opening line, then the steps'
    assert messages[-1]["data"]["status"] == "completed"
    rec.close()


def test_killed_server_leaves_running_job_failed_interrupted(server):
    token = server.login("alice")
    job = server.submit(token, steps=1000, interval=0.05)
    wait_for(lambda: server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]["status"] == "running")
    server.kill()
    server.start()
    token = server.login("alice")
    snapshot = wait_for(
        lambda: (j := server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"])["status"] == "failed" and j,
        timeout=KILLED_JOBS_SETTLE_WITHIN,
    )
    assert snapshot["error"]["code"] == "interrupted"
    events = server.api("GET", f"/api/jobs/{job['id']}/events", token).json()["events"]
    assert events[-1]["type"] == "job_status" and events[-1]["data"]["error"]["code"] == "interrupted"
    rec = Recorder(server, token)
    rec.client.call("subscribe", {"job_id": job["id"], "last_seq": events[-1]["seq"] - 1}, timeout=10)
    wait_for(lambda: rec.job_finished(job["id"]))
    rec.close()


def test_bad_messages_get_errors_and_the_connection_keeps_working(server):
    token = server.login("alice")
    rec = Recorder(server, token)
    rec.client.eio.send('2["echo", {not json')  # a Socket.IO EVENT packet whose JSON is broken
    rec.client.emit("no_such_event", {})
    rec.client.emit("subscribe", {"job_id": "seven"})
    rec.client.emit("echo", {"blob": "x" * (70 * 1024)})  # over the 64 KiB default
    codes = wait_for(
        lambda: (lambda c: c if len(c) >= 4 else None)(
            [m["code"] for m in list(rec.messages) if m.get("type") == "error"]
        )
    )
    assert set(codes) == {"invalid_json", "unknown_event", "invalid_payload", "message_too_large"}
    assert rec.client.call("ping", {"t": 1}, timeout=5) == {"ok": True}
    assert rec.client.connected
    rec.close()
