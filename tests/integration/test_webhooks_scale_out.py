"""Webhooks past one process: two gunicorn eventlet web processes on one PostgreSQL and
one Redis, both running the dispatcher, and every attempt sent by exactly one of them.

The receiver holds the first POSTs unanswered until nine wait together: one process has
at most eight attempts in flight (``MAX_IN_FLIGHT``), so nine at once are both processes
sending. Each of those first answers is a 500, so those deliveries are claimed again for
a second attempt, by whichever process gets there first.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.webhooks.dispatcher import MAX_IN_FLIGHT
from app.webhooks.signing import verify
from tests.helpers import wait_for
from tests.webhook_receiver import Receiver

from .cluster import Cluster
from .conftest import ServerProcess

pytestmark = [pytest.mark.eventlet_only, pytest.mark.scale_out]

SECRET = "scale-out-webhook-secret"
JOBS = 10
#: The POSTs held together: more than one process can have in flight.
TOGETHER = MAX_IN_FLIGHT + 1


@pytest.fixture
def cluster(tmp_path: Path, postgres_database: str) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path,
        postgres_database,
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        WEBHOOK_DISPATCH_INTERVAL="0.1",
        WEBHOOK_RETRY_BASE_SECONDS="0.2",
        # Longer than the receiver holds its first POSTs: those attempts get their 500.
        WEBHOOK_TIMEOUT_SECONDS="30",
    )
    try:
        yield cluster
    finally:
        cluster.stop()


def attempts_made(server: ServerProcess) -> float:
    """The process's own count of webhook attempts (``herald_webhook_deliveries_total``)."""
    text = requests.get(server.url + "/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "herald_webhook_deliveries_total"
    )


def test_two_processes_send_each_attempt_once_and_each_job_end_is_delivered_once(cluster: Cluster):
    web_a, web_b = cluster.web(), cluster.web()
    receiver = Receiver([500] * TOGETHER, hold_until=TOGETHER, hold_for=20)
    try:
        token = web_a.login("alice")
        response = web_a.api(
            "POST", "/api/webhooks", token, json={"url": receiver.url, "events": ["*"], "secret": SECRET}
        )
        assert response.status_code == 201, response.text
        hook_id = response.json()["webhook"]["id"]
        jobs = [(web_a if i % 2 else web_b).submit(token, steps=1, interval=0) for i in range(JOBS)]
        job_ids = {job["id"] for job in jobs}

        def all_delivered() -> list[dict[str, Any]] | None:
            rows = web_b.api("GET", f"/api/webhooks/{hook_id}/deliveries?limit=500", token).json()["deliveries"]
            return rows if len(rows) >= JOBS and all(row["status"] == "delivered" for row in rows) else None

        try:
            # Within a claim window and a retry or two even if an attempt is lost with its
            # process (its delivery is claimed again once the window has passed).
            rows = wait_for(all_delivered, timeout=180, interval=0.2)
        except AssertionError:
            raise AssertionError(f"not every job end was delivered\n{cluster.logs()}") from None
        posts = receiver.posts()
    finally:
        receiver.close()

    assert receiver.most_waiting >= TOGETHER, (
        f"at most {receiver.most_waiting} POSTs were in flight together: one process sent them all\n{cluster.logs()}"
    )
    # One delivery per job end, each delivered once.
    assert len(rows) == JOBS and {row["job_id"] for row in rows} == job_ids
    accepted = [post for post in posts if post.status == 200]
    by_job = Counter(json.loads(post.body)["job"]["id"] for post in accepted)
    assert by_job == dict.fromkeys(job_ids, 1), by_job
    by_delivery = Counter(post.headers["Herald-Delivery"] for post in accepted)
    assert by_delivery == {str(row["id"]): 1 for row in rows}, by_delivery
    # Every attempt was sent once: the receiver saw as many POSTs of a delivery as its
    # record counts attempts, and the two processes together counted as many as were sent.
    sent = Counter(post.headers["Herald-Delivery"] for post in posts)
    assert sent == {str(row["id"]): row["attempts"] for row in rows}, (sent, rows)
    assert sum(row["attempts"] for row in rows) == len(posts) >= JOBS + TOGETHER
    wait_for(lambda: attempts_made(web_a) + attempts_made(web_b) == len(posts), timeout=10)
    assert all(verify(SECRET, post.headers["Herald-Signature"], post.body) for post in posts)
