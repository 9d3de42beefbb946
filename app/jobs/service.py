"""Job operations shared by REST, sockets and other jobs: submit, read, cancel, history."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, Text, bindparam, cast, func, or_, select

from ..database import commit_session
from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from ..inputs import check_client_id
from ..models import FINAL_STATUSES, Job, JobEvent, JobStatus, isoformat, utcnow
from ..models.job import job_fields
from ..realtime.pipeline import ACTIVE_STATUSES, Fence, FenceRefused, pipeline
from .registry import get_kind, outcome_of
from .runner import runner


def submit_job(
    owner_id: int,
    kind: str,
    params: Any,
    *,
    client_id: str | None = None,
    parent_id: int | None = None,
    internal: bool = False,
) -> Job:
    """Validate, store (status ``pending``, event seq 1) and queue a job."""
    job_kind = get_kind(kind)
    if not internal and not job_kind.submittable:
        raise ValidationFailed(f"job kind {kind!r} cannot be submitted directly", details={"path": "kind"})
    clean = job_kind.validate(params)
    if job_kind.precheck is not None:
        job_kind.precheck(owner_id, clean)
    if client_id is not None:
        check_client_id(client_id)
    job = Job(
        kind=kind,
        owner_id=owner_id,
        status=JobStatus.PENDING.value,
        params=clean,
        client_id=client_id,
        parent_id=parent_id,
        created_at=utcnow(),
    )
    db.session.add(job)
    commit_session()
    pipeline.publish_status(job.id, JobStatus.PENDING.value)
    db.session.refresh(job)
    # The snapshot as submitted: the run reports itself from here on (the runner's own
    # reads end this session's transaction, which would reload it as it is by then).
    db.session.expunge(job)
    runner.submitted(job.id, coordinator=job_kind.coordinator)
    return job


#: ``job id -> owner id`` of jobs seen here: a job's owner never changes and jobs are never
#: deleted, so a subscription (a reconnect storm makes thousands) is authorized without a query.
_job_owners: dict[int, int] = {}
_JOB_OWNERS_KEPT = 100_000


def check_job_owner(user_id: int, job_id: int) -> None:
    """``NotFound`` unless ``user_id`` owns the job (same as a missing job)."""
    owner = _job_owners.get(job_id)
    if owner is None:
        owner = db.session.scalar(select(Job.owner_id).where(Job.id == job_id))
        if owner is None:
            raise NotFound(f"job {job_id} not found")
        if len(_job_owners) >= _JOB_OWNERS_KEPT:
            _job_owners.clear()
        _job_owners[job_id] = owner
    if owner != user_id:
        raise NotFound(f"job {job_id} not found")


def get_owned_job(user_id: int, job_id: int) -> Job:
    """The job if ``user_id`` owns it; otherwise ``NotFound`` (same as a missing job)."""
    job = db.session.get(Job, job_id)
    if job is None or job.owner_id != user_id:
        raise NotFound(f"job {job_id} not found")
    return job


def job_snapshot(job: Any) -> dict[str, Any]:
    """The job (a ``Job`` or a row of its table) as clients see it, with this process's
    freshest progress tick and its ``outcome`` (``succeeded``, ``failures``, ``failed``,
    ``cancelled``; None while active)."""
    data = job_fields(job)
    # An ended job's row holds its last tick (the final write carries it); a live state this
    # process still holds may be older (an external job can end on another process).
    live = pipeline.latest_progress(job.id) if job.status in ACTIVE_STATUSES else None
    if live is not None:
        data["progress"] = live
    data["outcome"] = outcome_of(job.kind, job.status, job.params, job.result)
    return data


_jobs = Job.__table__
#: One job's row (built once: every subscription reads one).
_JOB_ROW = select(_jobs).where(_jobs.c.id == bindparam("job_id"))


def read_job_row(job_id: int) -> Any:
    """The job's current row (attributes as on ``Job``), or None: read as a row, not an
    object — a reconnect storm's thousands of subscriptions each read one."""
    return db.session.execute(_JOB_ROW, {"job_id": job_id}).first()


def snapshot_after_join(user_id: int, job_id: int, join: Callable[[], None]) -> dict[str, Any]:
    """The user's job (else ``NotFound``), read after ``join()`` so that a change after
    the read still reaches the room just joined; the session is released either way."""
    try:
        job = get_owned_job(user_id, job_id)
        join()
        db.session.refresh(job)
        return job_snapshot(job)
    finally:
        db.session.rollback()


def latest_progress(job_id: int) -> dict[str, Any] | None:
    """This process's freshest tick of a job (a coordinator watching its child), if any."""
    return pipeline.latest_progress(job_id)


def status_moments(job_ids: Iterable[int]) -> dict[int, tuple[str | None, str | None]]:
    """``{job_id: (started, finished)}``: the timestamps of each job's last ``running``
    and its final ``job_status`` event, as the wire shows them.

    A socket that renders from messages alone sees exactly these instants, so a duration
    REST computes from them equals the socket's. Reads on its own connection: the caller's
    session is left as it was.
    """
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    query = (
        select(JobEvent.job_id, JobEvent.data, JobEvent.created_at)
        .where(JobEvent.job_id.in_(ids), JobEvent.type == "job_status")
        .order_by(JobEvent.job_id, JobEvent.seq)
    )
    moments: dict[int, tuple[str | None, str | None]] = {}
    with db.engine.connect() as connection:
        for job_id, data, created_at in connection.execute(query):
            status = (data or {}).get("status")
            started, finished = moments.get(job_id, (None, None))
            if status == JobStatus.RUNNING.value:
                started, finished = isoformat(created_at), None
            elif status in {s.value for s in FINAL_STATUSES}:
                finished = isoformat(created_at)
            moments[job_id] = (started, finished)
    return moments


@dataclass(frozen=True)
class JobFilter:
    """Which of a user's jobs a listing (and its counts by status) covers."""

    kind: str | None = None
    #: Children of this job only.
    parent_id: int | None = None
    #: Jobs no other job started (ignored with ``parent_id``).
    top_level: bool = False
    #: Text in the kind or params, or a job id (``42`` or ``#42``).
    search: str | None = None

    def terms(self, user_id: int) -> list[Any]:
        """The WHERE terms (status aside)."""
        terms: list[Any] = [Job.owner_id == user_id]
        if self.kind:
            terms.append(Job.kind == self.kind)
        if self.parent_id is not None:
            terms.append(Job.parent_id == self.parent_id)
        elif self.top_level:
            terms.append(Job.parent_id.is_(None))
        if self.search:
            text = self.search.strip()
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            matches = [Job.kind.ilike(pattern, escape="\\"), cast(Job.params, String).ilike(pattern, escape="\\")]
            if text.lstrip("#").isdigit() and len(text) < 19:
                matches.append(Job.id == int(text.lstrip("#")))
            terms.append(or_(*matches))
        return terms


def list_jobs(
    user_id: int,
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    where: JobFilter = JobFilter(),
) -> list[Job]:
    """A user's jobs, newest first, optionally filtered by status and ``where``."""
    terms = where.terms(user_id)
    if status:
        terms.append(Job.status == status)
    query = select(Job).where(*terms).order_by(Job.id.desc()).limit(limit).offset(offset)
    return list(db.session.scalars(query))


def status_counts(user_id: int, where: JobFilter = JobFilter()) -> dict[str, int]:
    """``{status: n}`` for every status of the jobs ``where`` selects."""
    counts = {s.value: 0 for s in JobStatus}
    query = select(Job.status, func.count()).where(*where.terms(user_id)).group_by(Job.status)
    for status, n in db.session.execute(query):
        counts[status] = int(n)
    return counts


def child_counts(job_ids: Iterable[int]) -> dict[int, int]:
    """``{job_id: number of child jobs}`` for the jobs that have any."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    query = select(Job.parent_id, func.count()).where(Job.parent_id.in_(ids)).group_by(Job.parent_id)
    return {int(parent): int(n) for parent, n in db.session.execute(query)}


_events = JobEvent.__table__
#: A page of a job's stored events after a seq (built once: replays run it per subscription).
_EVENT_PAGE = (
    select(_events.c.type, _events.c.seq, _events.c.created_at, _events.c.data)
    .where((_events.c.job_id == bindparam("job_id")) & (_events.c.seq > bindparam("after")))
    .order_by(_events.c.seq)
    .limit(bindparam("limit", type_=Integer))
)


def job_event_messages(job_id: int, *, after: int, limit: int) -> list[dict[str, Any]]:
    """The wire messages of durable events with ``seq > after``, in order: what
    ``JobEvent.to_message`` gives, read as rows (a reconnect storm replays thousands of
    pages; loading ORM objects for them cost more than the query)."""
    rows = db.session.execute(_EVENT_PAGE, {"job_id": job_id, "after": after, "limit": limit})
    return [
        {"type": type_, "job_id": job_id, "seq": seq, "timestamp": isoformat(created_at), "data": data}
        for type_, seq, created_at, data in rows
    ]


def job_event_messages_json(job_id: int, *, after: int = 0, limit: int | None = None) -> str:
    """The wire messages of durable events with ``seq > after``, in order, as one JSON array
    — the same as ``json.dumps(job_event_messages(...))``.

    Each event's ``data`` is spliced in as the JSON text it is stored as: decoding and
    re-encoding it was ~80 % of the time a 10,000-event page took (a long log is read in
    such pages), and the text is JSON already (the journal stores nothing else).
    """
    query = (
        select(JobEvent.type, JobEvent.seq, JobEvent.created_at, cast(JobEvent.data, Text))
        .where(JobEvent.job_id == job_id, JobEvent.seq > after)
        .order_by(JobEvent.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    dumps = json.dumps
    head = f',"job_id":{int(job_id)},"seq":'
    return (
        "["
        + ",".join(
            f'{{"type":{dumps(type_)}{head}{int(seq)},"timestamp":"{isoformat(created_at)}","data":{data or "null"}}}'
            for type_, seq, created_at, data in db.session.execute(query)
        )
        + "]"
    )


def cancel_job(job: Job) -> Job:
    """Ask a job to stop; a final one is a conflict.

    A pending job nobody holds is cancelled at once; one that runs is told through the
    ``cancel_requested`` flag, which its holder (any process or worker) polls every
    ``JOB_CANCEL_POLL_INTERVAL``; a dead holder's job is settled ``cancelled`` by the sweep.
    An external job ends ``cancelled`` at once (its producer is outside Herald).
    """
    if JobStatus(job.status) in FINAL_STATUSES:
        raise Conflict(f"job {job.id} is already {job.status}", code="job_finished")
    job.cancel_requested = True
    commit_session()
    from .producers import EXTERNAL, cancel_external  # producers reaches the kinds, which use this module

    if job.kind == EXTERNAL:
        cancel_external(job.id)  # no runner holds it: it ends now; its producer hears at its next report
    elif not runner.cancel_local(job.id):
        try:
            pipeline.publish_status(job.id, JobStatus.CANCELLED.value, fence=Fence.unclaimed(), finished_at=utcnow())
        except FenceRefused:
            pass  # claimed meanwhile: its holder sees the flag
    db.session.refresh(job)
    return job
