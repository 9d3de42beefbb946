"""Truthful endings with the inline executor: one terminal event per job, nothing after it.

Cancels land at every moment of a short job's life — before it is claimed, while it
runs, as it finishes, after it ended — and every job still ends with exactly one final
``job_status``, as its last event, matching the job row. (The Celery executor and killed
or paused workers: tests/integration/test_scale_out.py.)
"""

from __future__ import annotations

import random
import threading
import time

from tests.helpers import wait_for

FINAL = {"completed", "failed", "cancelled"}


def test_cancels_at_any_moment_leave_exactly_one_terminal_event_last(app, client, auth):
    token = auth.token_for("alice")
    headers = auth.headers(token)
    rng = random.Random(7)
    answers: list[int] = []

    def cancel_later(job_id: int, delay: float) -> None:
        time.sleep(delay)
        answers.append(app.test_client().post(f"/api/jobs/{job_id}/cancel", headers=headers).status_code)

    jobs: list[int] = []
    cancellers: list[threading.Thread] = []
    for _ in range(24):  # each job ~0.2 s long, its cancel 0-0.3 s after its submission
        job_id = client.post(
            "/api/jobs", json={"kind": "simulate", "params": {"steps": 10, "interval": 0.02}}, headers=headers
        ).get_json()["job"]["id"]
        jobs.append(job_id)
        cancellers.append(threading.Thread(target=cancel_later, args=(job_id, rng.uniform(0, 0.3))))
        cancellers[-1].start()
    for thread in cancellers:
        thread.join()
    assert set(answers) <= {202, 409}, answers

    def status(job_id: int) -> str:
        return str(client.get(f"/api/jobs/{job_id}", headers=headers).get_json()["job"]["status"])

    wait_for(lambda: all(status(job) in FINAL for job in jobs), timeout=30)
    time.sleep(0.3)  # anything a loser of the race might still write would be in by now
    endings = set()
    for job_id in jobs:
        events = client.get(f"/api/jobs/{job_id}/events", headers=headers).get_json()["events"]
        terminal = [i for i, e in enumerate(events) if e["type"] == "job_status" and e["data"]["status"] in FINAL]
        assert terminal == [len(events) - 1], (job_id, [(e["seq"], e["type"], e["data"]) for e in events])
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["data"]["status"] == status(job_id)
        endings.add(status(job_id))
    assert "cancelled" in endings, answers  # the race was run, not skipped
