"""How long a job's durable events are kept, and where a job's kept history starts.

Every durable event is stored (the journal) and replayed to clients that resume from a
``last_seq``. Without a bound a job logging millions of lines, or years of finished
jobs, would grow the database forever, so any process's heartbeat trims it now and then:
events beyond ``HISTORY_MAX_EVENTS_PER_JOB`` (the oldest of the job) and events older
than ``HISTORY_MAX_AGE_DAYS``. The job row itself (status, result, latest progress) is
never trimmed. A client whose position falls before what is kept is told so — a
``resync`` with the current snapshot — instead of getting a silent gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, delete, exists, func, select

from ..database import write_off_the_loop
from ..extensions import db
from ..metrics import HISTORY_EVENTS_TRIMMED
from ..models import Job, JobEvent

log = logging.getLogger(__name__)

#: Events deleted per statement; a trim stops after a few statements and goes on at the
#: next one, so it never holds the database (or SQLite's write lock) for long.
TRIM_BATCH = 5_000
#: Deletes of old events per trim.
TRIM_STATEMENTS = 4
#: Jobs brought back under the per-job bound per trim (one delete each).
TRIM_JOBS = 16


@dataclass(frozen=True)
class Retention:
    """The history bound: events per job (0 = all) and age (``None`` = forever)."""

    max_events_per_job: int = 0
    max_age: timedelta | None = None

    @classmethod
    def from_config(cls, config: dict) -> Retention:
        days = float(config["HISTORY_MAX_AGE_DAYS"])
        return cls(int(config["HISTORY_MAX_EVENTS_PER_JOB"]), timedelta(days=days) if days > 0 else None)

    @property
    def keeps_everything(self) -> bool:
        return self.max_events_per_job <= 0 and self.max_age is None


def first_kept_seq(job_id: int) -> int | None:
    """The seq of the job's oldest stored event (``None`` when none is stored)."""
    return db.session.scalar(select(func.min(JobEvent.seq)).where(JobEvent.job_id == job_id))


def trim(engine: Engine, retention: Retention, *, now: datetime) -> int:
    """Delete what ``retention`` no longer keeps, a bounded amount per call; returns the count.

    On SQLite the deletes run in an OS thread under the process's write lock, like the
    journal's commits: the event loop never waits for the disk.
    """
    if retention.keeps_everything:
        return 0
    connection = engine.connect()  # checked out on the loop: the pool's locks are green
    try:

        def run() -> int:
            with connection.begin():
                return _trim(connection, retention, now)

        deleted = write_off_the_loop(engine, run)
    finally:
        connection.close()
    if deleted:
        HISTORY_EVENTS_TRIMMED.inc(deleted)
        log.info("history trimmed: %d event(s) deleted", deleted)
    return deleted


def _trim(connection: Connection, retention: Retention, now: datetime) -> int:
    deleted = 0
    events = JobEvent.__table__
    if retention.max_age is not None:
        cutoff = now - retention.max_age
        for _ in range(TRIM_STATEMENTS):
            oldest = select(events.c.id).where(events.c.created_at < cutoff).limit(TRIM_BATCH)
            count = connection.execute(delete(events).where(events.c.id.in_(oldest))).rowcount
            deleted += count
            if count < TRIM_BATCH:
                break
    if retention.max_events_per_job > 0:
        keep = retention.max_events_per_job
        jobs = Job.__table__
        # Jobs with something below their bound: the (job_id, seq) index answers each probe.
        over = (
            select(jobs.c.id, jobs.c.last_seq)
            .where(
                jobs.c.last_seq > keep,
                exists().where(and_(events.c.job_id == jobs.c.id, events.c.seq <= jobs.c.last_seq - keep)),
            )
            .order_by(jobs.c.id)
            .limit(TRIM_JOBS)
        )
        for job_id, last_seq in connection.execute(over).all():
            below = select(events.c.id).where(events.c.job_id == job_id, events.c.seq <= last_seq - keep)
            deleted += connection.execute(delete(events).where(events.c.id.in_(below.limit(TRIM_BATCH)))).rowcount
    return deleted
