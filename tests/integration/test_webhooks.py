"""Webhooks on the real server: signed deliveries to a receiver on loopback, retries, no
delivery lost to a server killed before it sent it, a hung receiver that holds nothing
but its own attempt, and finished deliveries trimmed on the history's schedule."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.webhooks.signing import verify
from tests.helpers import wait_for
from tests.webhook_receiver import Receiver, SilentReceiver, TricklingReceiver

from .conftest import ServerProcess, launch

SECRET = "integration-webhook-secret"
FAST = {
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "WEBHOOK_DISPATCH_INTERVAL": "0.2",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server whose webhooks may call 127.0.0.1, retrying within a second."""
    yield from launch(tmp_path, **FAST)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def register(server: ServerProcess, token: str, url: str, events: list[str]) -> dict[str, Any]:
    response = server.api("POST", "/api/webhooks", token, json={"url": url, "events": events, "secret": SECRET})
    assert response.status_code == 201, response.text
    return dict(response.json()["webhook"])


def deliveries(server: ServerProcess, token: str, hook_id: int) -> list[dict[str, Any]]:
    response = server.api("GET", f"/api/webhooks/{hook_id}/deliveries", token)
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


def delivered(server: ServerProcess, token: str, hook_id: int) -> dict[str, Any] | None:
    rows = deliveries(server, token, hook_id)
    return rows[0] if rows and rows[0]["status"] == "delivered" else None


def finished(server: ServerProcess, token: str, job_id: int) -> dict[str, Any] | None:
    job = server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]
    return job if job["status"] in ("completed", "failed", "cancelled") else None


def test_a_job_end_reaches_the_receiver_signed(server: ServerProcess, receiver: Receiver):
    token = server.login("alice")
    hook = register(server, token, receiver.url, ["job.completed", "job.failed"])
    job = server.submit(token, steps=3, interval=0.02)
    (post,) = wait_for(receiver.posts, timeout=30)
    assert verify(SECRET, post.headers["Herald-Signature"], post.body)
    assert post.headers["Herald-Event"] == "job.completed"
    body = json.loads(post.body)
    assert body["job"]["id"] == job["id"] and body["job"]["status"] == "completed"
    assert body["job"]["result"] == {"steps": 3}
    row = wait_for(lambda: delivered(server, token, hook["id"]), timeout=10)
    assert post.headers["Herald-Delivery"] == str(row["id"])
    assert row["attempts"] == 1 and row["last_status_code"] == 200 and row["job_id"] == job["id"]
    # bob sees none of it
    bob = server.login("bob")
    assert server.api("GET", f"/api/webhooks/{hook['id']}/deliveries", bob).status_code == 404


def test_a_receiver_that_fails_twice_gets_the_third_attempt(server: ServerProcess):
    receiver = Receiver([500, 500])
    try:
        token = server.login("alice")
        hook = register(server, token, receiver.url, ["*"])
        job = server.submit(token, steps=1, interval=0, fail_at=1)
        row = wait_for(lambda: delivered(server, token, hook["id"]), timeout=30)
        assert row["attempts"] == 3 and row["event"] == "job.failed" and row["job_id"] == job["id"]
        posts = receiver.posts()
        assert len(posts) == 3 and len({p.body for p in posts}) == 1
        assert all(verify(SECRET, p.headers["Herald-Signature"], p.body) for p in posts)
        assert json.loads(posts[-1].body)["job"]["error"]["code"] == "simulated_failure"
    finally:
        receiver.close()


def test_a_job_end_the_killed_server_never_sent_is_delivered_after_restart(tmp_path: Path, receiver: Receiver):
    # The first server looks for events once, at start, then not for an hour: the job's
    # end is stored but not turned into a delivery when the server is killed.
    started = launch(tmp_path, **{**FAST, "WEBHOOK_DISPATCH_INTERVAL": "3600"})
    server = next(started)
    try:
        token = server.login("alice")
        hook = register(server, token, receiver.url, ["job.completed"])
        job = server.submit(token, steps=2, interval=0.02)
        wait_for(lambda: finished(server, token, job["id"]), timeout=30)
        assert deliveries(server, token, hook["id"]) == [] and receiver.posts() == []
        server.kill()
        server.env["WEBHOOK_DISPATCH_INTERVAL"] = "0.2"
        server.start()
        token = server.login("alice")
        row = wait_for(lambda: delivered(server, token, hook["id"]), timeout=30)
        assert row["job_id"] == job["id"] and row["attempts"] == 1
        (post,) = receiver.posts()
        assert json.loads(post.body)["job"]["id"] == job["id"]
    finally:
        next(started, None)


def test_a_receiver_that_never_answers_times_out_is_retried_and_holds_no_other_request(tmp_path: Path):
    silent = SilentReceiver()
    started = launch(tmp_path, **{**FAST, "WEBHOOK_TIMEOUT_SECONDS": "3"})
    server = next(started)
    try:
        token = server.login("alice")
        hook = register(server, token, silent.url, ["job.completed"])
        server.submit(token, steps=1, interval=0)
        wait_for(silent.accepted, timeout=30)  # an attempt is now waiting for an answer
        for _ in range(5):
            began = time.monotonic()
            assert server.api("GET", "/health", token).status_code == 200
            # Far below the 3 s the attempt waits: the event loop is not held by it.
            assert time.monotonic() - began < 1.5
            time.sleep(0.1)

        def retried() -> dict[str, Any] | None:
            rows = deliveries(server, token, hook["id"])
            return rows[0] if rows and rows[0]["attempts"] >= 2 and rows[0]["last_error"] else None

        row = wait_for(retried, timeout=30)
        assert row["status"] == "pending" and row["last_status_code"] is None
        assert row["last_error"] == "no answer within 3 s"
        wait_for(lambda: silent.accepted() >= 2, timeout=30)  # the second attempt is claimed first, then connects
    finally:
        next(started, None)
        silent.close()


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_attempts_deadline(tmp_path: Path):
    trickling = TricklingReceiver(every=0.3)  # every read well within the 1 s timeout
    started = launch(tmp_path, **{**FAST, "WEBHOOK_TIMEOUT_SECONDS": "1"})
    server = next(started)
    try:
        token = server.login("alice")
        hook = register(server, token, trickling.url, ["job.completed"])
        server.submit(token, steps=1, interval=0)

        def cut_off() -> dict[str, Any] | None:
            rows = deliveries(server, token, hook["id"])
            return rows[0] if rows and rows[0]["last_error"] else None

        row = wait_for(cut_off, timeout=30)
        assert row["status"] == "pending" and row["last_status_code"] is None
        assert row["last_error"] == "no complete answer within 2 s"
    finally:
        next(started, None)
        trickling.close()


def test_a_delivered_delivery_is_trimmed_once_past_the_retention(tmp_path: Path, receiver: Receiver):
    # About 1.7 s of retention, trimmed at every heartbeat (1-2 s).
    settings = {**FAST, "WEBHOOK_DELIVERY_RETENTION_DAYS": "0.00002", "HISTORY_TRIM_INTERVAL": "0.5"}
    started = launch(tmp_path, **settings)
    server = next(started)
    try:
        token = server.login("alice")
        hook = register(server, token, receiver.url, ["job.completed"])
        server.submit(token, steps=1, interval=0)
        wait_for(lambda: delivered(server, token, hook["id"]), timeout=30)
        wait_for(lambda: deliveries(server, token, hook["id"]) == [], timeout=30)
        assert len(receiver.posts()) == 1  # trimmed, not sent again
    finally:
        next(started, None)


def test_after_a_webhook_is_deleted_no_id_is_handed_out_again(server: ServerProcess, receiver: Receiver):
    # The walk-through: a webhook deleted, a new one created, another job failed — on
    # SQLite both deliveries went out as Herald-Delivery: 1 and the receiver dropped one.
    token = server.login("alice")
    first = register(server, token, receiver.url, ["job.failed"])
    server.submit(token, steps=1, interval=0, fail_at=1)
    wait_for(lambda: delivered(server, token, first["id"]), timeout=30)
    assert server.api("DELETE", f"/api/webhooks/{first['id']}", token).status_code == 204
    second = register(server, token, receiver.url, ["job.failed"])
    assert second["id"] > first["id"]
    server.submit(token, steps=1, interval=0, fail_at=1)
    row = wait_for(lambda: delivered(server, token, second["id"]), timeout=30)
    old, new = (post.headers["Herald-Delivery"] for post in receiver.posts())
    assert new == str(row["id"]) and int(new) > int(old)


def test_each_jobs_status_deliveries_in_seq_order_are_its_status_changes(server: ServerProcess, receiver: Receiver):
    # Whatever order they arrive in (each delivery is sent on its own), job.seq and
    # timestamp put a job's deliveries back in the order of its job_status events.
    token = server.login("alice")
    register(server, token, receiver.url, ["job.status"])
    jobs = [server.submit(token, steps=1, interval=0) for _ in range(4)]
    wait_for(lambda: len(receiver.posts()) >= 3 * len(jobs), timeout=30)
    posts = receiver.posts()
    assert len(posts) == 3 * len(jobs)
    bodies = [json.loads(post.body) for post in posts]
    for job in jobs:
        events = server.api("GET", f"/api/jobs/{job['id']}/events", token).json()["events"]
        changes = [(e["seq"], e["timestamp"], e["data"]["status"]) for e in events if e["type"] == "job_status"]
        mine = sorted(
            (b["job"]["seq"], b["timestamp"], b["job"]["status"]) for b in bodies if b["job"]["id"] == job["id"]
        )
        assert mine == changes
        assert [status for _, _, status in mine] == ["pending", "running", "completed"]
