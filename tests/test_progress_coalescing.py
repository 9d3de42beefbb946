"""``JobContext.progress`` is the hot call: it must stay free of I/O and coalesce its ticks.

Behaviour only (``bench/`` measures the speed): 10,000 calls write nothing to the database
and emit nothing from the job's own thread; the ticker sends at most one tick per interval,
and the latest values always go out.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from app.extensions import db
from app.jobs.context import JobContext
from app.models import JobEvent
from app.realtime.pipeline import TICK_SLOT, next_tick_due, pipeline, slot_start
from tests.helpers import stored_job_context

CALLS = 10_000


@pytest.fixture
def job_context(app, auth) -> Iterator[JobContext]:
    """A context for a stored job, as the runner builds it (nothing runs the job)."""
    owner_id = auth.create_user("alice")
    with app.app_context():
        ctx = stored_job_context(owner_id)
        yield ctx
        pipeline.forget(ctx.job_id)


@pytest.fixture
def emitted(monkeypatch) -> list[tuple[int, dict[str, Any]]]:
    """Every message the pipeline emits, with the id of the thread that emitted it."""
    sent: list[tuple[int, dict[str, Any]]] = []
    original = pipeline.outbox.send

    def record(message: dict[str, Any], owner_id: int, rooms: Any) -> None:
        sent.append((threading.get_ident(), message))
        original(message, owner_id, rooms)

    monkeypatch.setattr(pipeline.outbox, "send", record)
    return sent


def test_progress_calls_run_no_sql_in_the_job(app, job_context):
    statements: list[str] = []
    job_thread = threading.get_ident()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() == job_thread:
            statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for i in range(CALLS):
            job_context.progress(i + 1, CALLS, "working", phase="load")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []
    assert db.session.query(JobEvent).filter_by(job_id=job_context.job_id).count() == 0


def test_progress_calls_emit_nothing_from_the_job(job_context, emitted):
    job_thread = threading.get_ident()
    for i in range(CALLS):
        job_context.progress(i + 1, CALLS)
    assert [m for thread, m in emitted if thread == job_thread] == []


def test_progress_ticks_are_coalesced_to_one_per_interval(job_context, emitted):
    started = time.monotonic()
    for i in range(CALLS):
        job_context.progress(i + 1, CALLS)
    elapsed = time.monotonic() - started
    ticks_during_calls = sum(1 for _, m in emitted if m["job_id"] == job_context.job_id)
    assert ticks_during_calls <= elapsed / pipeline.interval + 2


def test_latest_progress_goes_out_when_flushed(job_context, emitted):
    for i in range(CALLS):
        job_context.progress(i + 1, CALLS, "working", phase="load")
    pipeline.flush(job_context.job_id)
    assert pipeline.outbox.drain()
    last = [m for _, m in emitted if m["job_id"] == job_context.job_id][-1]
    assert last["type"] == "job_progress" and last["seq"] is None
    assert last["data"]["current"] == CALLS and last["data"]["percent"] == 100.0
    assert last["data"]["message"] == "working" and last["data"]["phase"] == "load"


@pytest.mark.parametrize("base", [0.0123, 1_000.0071, 123_456.789, 9_876_543.2109])
def test_a_job_stepping_once_per_interval_keeps_every_tick_whatever_the_clock(base):
    """Each step's tick is due before the job's next step, at any monotonic clock value.

    ``sent_at + interval`` is a whole number of slots only up to float error; rounding
    that error up put the tick one slot later, again and again, until it fell behind the
    next step and that step's tick was lost (about 3 in 100 in the many-jobs bench).
    """
    interval = 0.1
    grid = interval * TICK_SLOT
    sent_at = -math.inf
    for step in range(2_000):
        stepped = math.ceil((base + step * interval) / 0.005) * 0.005 + 0.0004  # on the job's 5 ms grid, a little late
        due = next_tick_due(stepped, sent_at, interval)
        next_step = math.ceil((base + (step + 1) * interval) / 0.005) * 0.005
        assert due < next_step, (step, due - stepped)
        assert due - stepped <= grid + 1e-9  # sent within one slot of the step
        sent_at = slot_start(due + 0.0002, interval)  # the ticker wakes a little after due
