"""The runner's limits: worker slots for jobs, separate room for coordinators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.jobs.context import JobContext
from app.jobs.registry import job_kind
from app.jobs.runner import runner
from app.jobs.service import submit_job
from tests.helpers import wait_for


@job_kind("test_parent_waits_for_child", schema={"properties": {}}, coordinator=True)
def parent_waits_for_child(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Test-only coordinator: starts one simulate child and waits for it."""
    child = submit_job(ctx.owner_id, "simulate", {"steps": 2, "interval": 0}, parent_id=ctx.job_id, internal=True)
    assert runner.wait(child.id, timeout=30)
    return {"child": child.id}


def test_coordinators_do_not_starve_their_children(app, client, auth):
    app.extensions["herald_runner"].max_concurrent = 1
    token = auth.token_for("alice")
    parents = [
        client.post("/api/jobs", json={"kind": "test_parent_waits_for_child"}, headers=auth.headers(token)).get_json()[
            "job"
        ]["id"]
        for _ in range(3)
    ]

    def statuses():
        return [
            client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]["status"]
            for job_id in parents
        ]

    wait_for(lambda: statuses() == ["completed"] * 3, timeout=30)


@job_kind("test_result_not_json", schema={"properties": {}})
def result_not_json(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Test-only: a result JSON cannot hold (a datetime inside a dict)."""
    return {"when": datetime.now(UTC)}


def test_a_result_that_is_not_json_fails_the_job_saying_why(app, client, auth):
    token = auth.token_for("alice")
    answer = client.post("/api/jobs", json={"kind": "test_result_not_json"}, headers=auth.headers(token))
    job_id = answer.get_json()["job"]["id"]

    def ended():
        job = client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    job = wait_for(ended, timeout=20)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "result_not_json" and "datetime" in job["error"]["message"]


def test_a_cancel_while_the_run_is_being_set_up_is_not_lost(app, client, auth, monkeypatch):
    set_up = JobContext.hold_lease_until

    def cancelled_meanwhile(self: JobContext, moment: float) -> None:
        runner.cancel_local(self.job_id)  # after the row was read, before the context is known
        set_up(self, moment)

    monkeypatch.setattr(JobContext, "hold_lease_until", cancelled_meanwhile)
    token = auth.token_for("alice")
    answer = client.post(
        "/api/jobs", json={"kind": "simulate", "params": {"steps": 500, "interval": 0.2}}, headers=auth.headers(token)
    )
    job_id = answer.get_json()["job"]["id"]

    def ended():
        job = client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    assert wait_for(ended, timeout=20)["status"] == "cancelled"
