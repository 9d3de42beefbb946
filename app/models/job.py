"""Jobs and their event history: the row is the truth, events notify.

A job's durable events (status, logs, steps, counts, results) carry a per-job sequence
number that starts at 1 and has no gaps; ``Job.last_seq`` is the highest one committed.
Progress ticks are not events: the latest one lives in ``Job.progress``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, isoformat, utcnow


class JobStatus(enum.StrEnum):
    """The five states of a job; the last three are final."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for completed, failed and cancelled."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Job(db.Model):
    """One unit of long-running work, owned by one user."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        Index("ix_jobs_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING.value)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The latest progress tick: ``{type, current, total, percent, rate, eta, message, ...}``.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: Kind-specific counters (``success_count`` ... for batches).
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    #: ``{"code", "message"}`` when the job failed.
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: The submitting connection's client id, for client-room notices.
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The job that started this one (workflow steps, batch cases).
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, index=True)
    #: The worker (process) holding the job's lease: None while pending and unclaimed. An
    #: external job's is its producer's holder token, ``producer:<n>`` (app/jobs/producers.py).
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    #: Until when the holder's lease runs (renewed by its heartbeat); past it, peers may
    #: fail a running job ``interrupted`` or release a pending one to be claimed again.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: When the job was last handed to an external executor (Celery); re-sent if unclaimed.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: External jobs (kind ``external``): the highest producer item ``n`` applied, set in the
    #: same UPDATE that takes the seqs of the events it produced (None for other kinds).
    producer_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: External jobs: when the producer token expires; a job still active then is failed.
    producer_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def status_enum(self) -> JobStatus:
        """``status`` as a :class:`JobStatus`."""
        return JobStatus(self.status)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot every protocol sends: REST, subscribe acks, replays."""
        return job_fields(self)


def job_fields(job: Any) -> dict[str, Any]:
    """The snapshot every protocol sends (REST, subscribe acks, replays), from a ``Job``
    or a row of its table (a reconnect storm reads thousands: rows cost less)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "owner_id": job.owner_id,
        "status": job.status,
        "params": job.params,
        "progress": job.progress,
        "counts": job.counts,
        "message": job.message,
        "result": job.result,
        "error": job.error,
        "client_id": job.client_id,
        "parent_id": job.parent_id,
        "last_seq": job.last_seq,
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at),
        "finished_at": isoformat(job.finished_at),
    }


class JobEvent(db.Model):
    """One durable event of a job, numbered by ``seq`` within the job."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_message(self) -> dict[str, Any]:
        """The wire message, identical to the one sent live."""
        return {
            "type": self.type,
            "job_id": self.job_id,
            "seq": self.seq,
            "timestamp": isoformat(self.created_at),
            "data": self.data,
        }


class Worker(db.Model):
    """A process that runs jobs (web process or Celery worker), for operators; rows of
    processes not seen for a while are deleted. Liveness of jobs is their lease, not this."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
