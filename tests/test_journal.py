"""The journal: group commits, seqs handed out ahead of the commit, and what breaks a job.

Threading mode (the writer is a thread here, a greenlet plus an OS thread when served).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, update

from app.extensions import db
from app.jobs.context import JobContext
from app.models import Job, JobEvent
from app.realtime.pipeline import FenceRefused, pipeline
from tests.helpers import stored_job_context

WORKER = "worker-under-test"


@pytest.fixture
def held_job(app, auth) -> Iterator[JobContext]:
    """A running job held by ``WORKER``, with its first (waited-for) status stored."""
    owner_id = auth.create_user("alice")
    with app.app_context():
        ctx = stored_job_context(owner_id, worker_id=WORKER)
        pipeline.publish_status(ctx.job_id, "running", fence=ctx.fence)  # seq 1: the journal learns it
        assert pipeline.outbox.drain()  # seq 1 sent before a test watches what is sent
        yield ctx
        pipeline.forget(ctx.job_id)


def stored_seqs(job_id: int) -> list[int]:
    db.session.rollback()
    return list(db.session.scalars(select(JobEvent.seq).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))


def test_log_returns_its_seq_at_once_and_the_history_has_no_gap(held_job):
    seqs = [held_job.log(f"line {n}") for n in range(500)]
    assert seqs == list(range(2, 502))
    pipeline.settle(held_job.job_id)
    assert stored_seqs(held_job.job_id) == list(range(1, 502))
    db.session.rollback()
    assert db.session.get(Job, held_job.job_id).last_seq == 501


def test_events_handed_in_together_share_transactions(app, held_job):
    commits: list[int] = []
    engine = db.engine
    listener = lambda conn: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        for n in range(1000):
            held_job.log(f"line {n}")
        pipeline.settle(held_job.job_id)
    finally:
        event.remove(engine, "commit", listener)
    assert len(stored_seqs(held_job.job_id)) == 1001
    assert len(commits) < 500  # group commit: far fewer transactions than events


def test_events_handed_in_one_by_one_share_transactions(app, held_job):
    commits: list[int] = []
    engine = db.engine
    listener = lambda conn: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        for n in range(100):
            held_job.log(f"line {n}")
            time.sleep(0.001)  # a job logging now and then, not in a burst
        pipeline.settle(held_job.job_id)
    finally:
        event.remove(engine, "commit", listener)
    assert len(stored_seqs(held_job.job_id)) == 101
    assert len(commits) < 50  # spaced commits gather what arrives meanwhile


def test_a_job_taken_by_another_worker_stores_nothing_more(held_job):
    held_job.log("before")
    pipeline.settle(held_job.job_id)
    db.session.execute(update(Job).where(Job.id == held_job.job_id).values(worker_id="someone-else"))
    db.session.commit()
    held_job.log("refused at commit")  # handed out a seq; the commit finds the fence gone
    with pytest.raises(FenceRefused):
        pipeline.settle(held_job.job_id)
    with pytest.raises(FenceRefused):
        held_job.log("refused at once")
    assert stored_seqs(held_job.job_id) == [1, 2]


def test_an_event_that_is_not_json_is_refused_in_the_job(held_job):
    with pytest.raises(TypeError, match="not JSON"):
        held_job.event("custom", {"when": object()})
    assert held_job.log("still fine") == 2
    pipeline.settle(held_job.job_id)
    assert stored_seqs(held_job.job_id) == [1, 2]


def test_committed_events_are_sent_in_seq_order(held_job, monkeypatch):
    sent: list[Any] = []
    monkeypatch.setattr(pipeline.outbox, "send", lambda message, owner, rooms: sent.append(message["seq"]))
    for n in range(300):
        held_job.log(f"line {n}")
    pipeline.settle(held_job.job_id)
    assert pipeline.outbox.drain()
    assert sent == list(range(2, 302))


def test_the_progress_of_several_jobs_is_saved_in_one_statement(app, auth):
    """Regression: the executemany once carried an expanding ``IN`` and failed for two rows."""
    from app.realtime.journal import _SAVE_PROGRESS

    owner_id = auth.create_user("alice")
    with app.app_context():
        ids = [stored_job_context(owner_id, worker_id=WORKER).job_id for _ in range(2)]
        db.session.execute(update(Job).where(Job.id.in_(ids)).values(status="running"))
        db.session.commit()
        with db.engine.begin() as conn:
            conn.execute(_SAVE_PROGRESS, [{"_job_id": i, "_progress": {"current": i}} for i in ids])
        db.session.expire_all()
        assert [db.session.get(Job, i).progress for i in ids] == [{"current": i} for i in ids]
