"""The journal: group commits, seqs handed out ahead of the commit, and what breaks a job.

Threading mode (the writer is a thread here, a greenlet plus an OS thread when served).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select, text, update

from app import json_text
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
            assert _SAVE_PROGRESS.run(conn, [{"_job_id": i, "_progress": {"current": i}} for i in ids]) == 2
        db.session.expire_all()
        assert [db.session.get(Job, i).progress for i in ids] == [{"current": i} for i in ids]


def test_the_driver_executemany_stores_what_the_core_execution_would(app, auth):
    """The SQLite path hands the driver parameters processed by the journal: the rows must
    be the ones SQLAlchemy's own execution of the same statement stores, JSON aside: the
    same values, written compact by the wire's encoder."""
    from app.realtime.journal import _INSERT_EVENTS

    owner_id = auth.create_user("alice")
    moment = datetime(2026, 12, 7, 18, 30, 1, 123456, tzinfo=UTC)
    data = [{"message": "é\u2028", "nested": {"list": [1, None, 2.5]}}, {}, {"none": None}]
    with app.app_context():
        job_ids = [stored_job_context(owner_id).job_id for _ in range(2)]
        core, driver = job_ids
        with db.engine.begin() as conn:
            rows = lambda job_id: [  # noqa: E731
                {"job_id": job_id, "seq": n + 1, "type": "job_log", "data": item, "created_at": moment}
                for n, item in enumerate(data)
            ]
            conn.execute(_INSERT_EVENTS.statement, rows(core))
            assert _INSERT_EVENTS.run(conn, rows(driver)) == len(data)
        with db.engine.connect() as conn:
            stored = {
                job_id: conn.execute(
                    text("SELECT seq, type, data, created_at FROM job_events WHERE job_id = :j ORDER BY seq"),
                    {"j": job_id},
                ).all()
                for job_id in job_ids
            }
        assert [row[:2] + row[3:] for row in stored[core]] == [row[:2] + row[3:] for row in stored[driver]]
        assert [json.loads(row.data) for row in stored[core]] == data
        assert [row.data for row in stored[driver]] == [json_text.dumps(item) for item in data]
        assert len(stored[core]) == len(data)


def test_the_driver_executemany_raises_sqlalchemys_errors(app, auth):
    """Straight to the driver's cursor, a refused statement still raises what the journal's
    error handling expects (SQLAlchemy's wrapping of the driver's error)."""
    from sqlalchemy.exc import IntegrityError

    from app.realtime.journal import _INSERT_EVENTS

    owner_id = auth.create_user("alice")
    with app.app_context():
        job_id = stored_job_context(owner_id).job_id
        row = {"job_id": job_id, "seq": 1, "type": "job_log", "data": {}, "created_at": datetime.now(UTC)}
        with db.engine.connect() as conn:
            assert not conn._has_events  # the direct path
            with conn.begin():
                assert _INSERT_EVENTS.run(conn, [row]) == 1
            with pytest.raises(IntegrityError), conn.begin():
                _INSERT_EVENTS.run(conn, [row])  # the same (job_id, seq) again


@pytest.fixture
def held_jobs(app, auth) -> Iterator[list[JobContext]]:
    """Four running jobs held by ``WORKER``, their first statuses stored and sent."""
    owner_id = auth.create_user("alice")
    with app.app_context():
        jobs = [stored_job_context(owner_id, worker_id=WORKER) for _ in range(4)]
        for ctx in jobs:
            pipeline.publish_status(ctx.job_id, "running", fence=ctx.fence)
        assert pipeline.outbox.drain()
        yield jobs
        for ctx in jobs:
            pipeline.forget(ctx.job_id)


def _log_in_one_batch(jobs: list[JobContext]) -> list[tuple[str, int]]:
    """Each job logs once while the writer is held in an earlier commit, so that every
    log lands in the next transaction; returns the ``UPDATE jobs`` statements of both
    transactions, each with its number of parameter sets."""
    gate, entered = threading.Event(), threading.Event()
    updates: list[tuple[str, int]] = []

    def hold(conn: Any) -> None:
        pipeline.journal.commit_hook = None
        entered.set()
        gate.wait(5)

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("UPDATE JOBS"):
            updates.append((statement, len(parameters) if executemany else 1))

    pipeline.journal.commit_hook = hold
    jobs[0].log("held in the commit before")
    assert entered.wait(5)
    for ctx in jobs:
        ctx.log("together")
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        gate.set()
        for ctx in jobs:
            try:
                pipeline.settle(ctx.job_id)
            except FenceRefused:
                pass
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
        pipeline.journal.commit_hook = None
    return updates


def test_the_held_jobs_of_a_transaction_take_their_seqs_in_one_statement(held_jobs):
    updates = _log_in_one_batch(held_jobs)
    # The held commit's own statement, then one executemany with a row for each job.
    assert [count for _, count in updates] == [1, len(held_jobs)]
    for ctx in held_jobs:
        expected = [1, 2, 3] if ctx is held_jobs[0] else [1, 2]
        assert stored_seqs(ctx.job_id) == expected
        assert db.session.get(Job, ctx.job_id).last_seq == expected[-1]


def test_a_held_job_taken_meanwhile_fails_alone_in_a_shared_transaction(held_jobs):
    taken = held_jobs[2]
    db.session.execute(update(Job).where(Job.id == taken.job_id).values(worker_id="someone-else"))
    db.session.commit()
    updates = _log_in_one_batch(held_jobs)
    # After the held commit's: the executemany missed one row, so it was rolled back and
    # each job took its own statement.
    assert [count for _, count in updates] == [1, len(held_jobs)] + [1] * len(held_jobs)
    with pytest.raises(FenceRefused):
        taken.log("refused at once")
    for ctx in held_jobs:
        expected = [1] if ctx is taken else [1, 2, 3] if ctx is held_jobs[0] else [1, 2]
        assert stored_seqs(ctx.job_id) == expected


def test_a_kept_connection_that_died_is_replaced_and_nothing_is_lost(held_job):
    held_job.log("before")
    pipeline.settle(held_job.job_id)
    kept = pipeline.journal._connections[db.engine]
    kept.connection.dbapi_connection.close()  # as when a database server restarts
    held_job.log("after")
    pipeline.settle(held_job.job_id)
    assert stored_seqs(held_job.job_id) == [1, 2, 3]
    assert pipeline.journal._connections[db.engine] is not kept
