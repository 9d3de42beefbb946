"""A batch cut off with its worker ends with counts that add up and nothing ``running``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.jobs.runner import runner
from app.models import Job, JobEvent, utcnow


def test_a_swept_batch_ends_with_no_running_count(app, auth):
    owner_id = auth.create_user("alice")
    with app.app_context():
        expired = utcnow() - timedelta(seconds=60)
        stale = {"success_count": 1, "failed_count": 0, "running_count": 3, "pending_count": 6, "total_count": 10}
        batch = Job(
            kind="batch_execution",
            owner_id=owner_id,
            params={"test_case_ids": list(range(1, 11))},
            status="running",
            worker_id="dead-worker",
            lease_expires_at=expired,
            counts=stale,
        )
        db.session.add(batch)
        db.session.commit()
        children = [
            ("completed", {"status": "passed"}),
            ("completed", {"status": "failed"}),
            ("running", None),
            ("running", None),
        ]
        for status, result in children:
            db.session.add(
                Job(kind="api_test", owner_id=owner_id, params={}, status=status, result=result, parent_id=batch.id)
            )
        db.session.commit()
        batch_id = batch.id
        runner.sweep()
        db.session.rollback()
        row = db.session.get(Job, batch_id)
        assert row.status == "failed" and row.error["code"] == "interrupted"
        assert row.counts == {
            "success_count": 1,
            "failed_count": 3,
            "running_count": 0,
            "pending_count": 6,
            "total_count": 10,
        }
        last = db.session.scalars(
            select(JobEvent).where(JobEvent.job_id == batch_id).order_by(JobEvent.seq.desc()).limit(1)
        ).one()
        assert last.type == "job_status" and last.data["counts"] == row.counts
