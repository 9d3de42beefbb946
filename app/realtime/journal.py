"""The journal: one writer commits every job's durable events, many per transaction.

Events are handed in and the writer takes everything handed in so far and commits it in
one transaction (group commit): on SQLite in a real OS thread, so the disk never holds
the event loop; on PostgreSQL on the loop itself, where psycopg2's I/O is green. Per job,
seqs follow the order events were handed in; each write is fenced (:class:`Fence`) in the
same UPDATE that takes its seqs. What was committed goes to ``on_committed`` in commit
order — the pipeline emits from there, so nothing is sent before it is stored.

A job's own events do not wait for the disk (:meth:`Journal.append`): while a process
holds a job's lease it is the job's only writer, so once the journal knows the job's last
seq it hands out the next one at once and the commit checks it (a mismatch or a refused
fence fails the write). A write that fails *breaks* the job here: its later writes are
refused with that error, so nothing of the job is stored after a gap, and the runner
learns of it at the job's next call or at :meth:`Journal.settle`, before the final status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, Connection, Engine, Update, bindparam, insert, or_, select, true, update
from sqlalchemy.exc import DBAPIError

from .. import json_text
from ..concurrency import Signal, new_signal, non_yielding_lock
from ..database import write_off_the_loop
from ..extensions import socketio
from ..metrics import COMMIT_BATCH_EVENTS, COMMIT_SECONDS, EVENTS_COMMITTED, EVENTS_REFUSED, PUBLISH_SECONDS
from ..models import Job, JobEvent

log = logging.getLogger(__name__)

ACTIVE_STATUSES = ("pending", "running")
#: Events one transaction takes at most before jobs handing in more wait for it.
MAX_BATCH = 1000
#: The least time between the starts of two commits: writes arriving one by one share a
#: transaction (a commit costs far more than a row) for at most this much latency.
COMMIT_SPACING = 0.015
#: Pending writes from which a batch commits at once, spacing or not.
GATHER_BELOW = 50
#: Seconds without a write after which the writer gives its connection back to the pool.
IDLE_RELEASE = 1.0


class JobGone(LookupError):
    """The job row no longer exists (deleted while running)."""


class SeqConflict(RuntimeError):
    """A job's seq moved under this process's feet: someone else wrote it (lease lost)."""


class AdvanceMissed(RuntimeError):
    """A held job's row was not where this process left it; the batch is retried job by job."""


class FenceRefused(RuntimeError):
    """The writer may no longer write this job (finished, or held by someone else)."""

    def __init__(self, job_id: int, status: str, holder: str | None) -> None:
        super().__init__(f"job {job_id} is {status}, held by {holder or 'nobody'}: write refused")
        self.job_id = job_id
        self.status = status
        self.holder = holder


@dataclass(frozen=True)
class Fence:
    """Who may append to a job's history; checked inside the write that takes the seq.

    Build one with :meth:`held_by` (the job's runner), :meth:`unclaimed` (cancelling a job
    nobody holds yet) or :meth:`lease_expired` (a peer settling a dead worker's job). The
    bare ``Fence()`` only asks that the row exists (a job's very first event).
    """

    mode: str = "none"
    holder: str | None = None
    now: datetime | None = None

    @classmethod
    def held_by(cls, worker_id: str) -> Fence:
        return cls("held", holder=worker_id)

    @classmethod
    def unclaimed(cls) -> Fence:
        return cls("unclaimed")

    @classmethod
    def lease_expired(cls, now: datetime) -> Fence:
        return cls("expired", now=now)

    def params(self) -> dict[str, Any]:
        """Bind values for the fence's condition."""
        return {"_holder": self.holder} if self.mode == "held" else {"_now": self.now} if self.mode == "expired" else {}


#: Only asks that the job row exists (a job's very first event).
NO_FENCE = Fence()


@dataclass(eq=False)
class EventWrite:
    """One durable event handed to the journal, and what became of it."""

    job_id: int
    type: str
    data: dict[str, Any]
    #: Job columns set together with the event (status, counts, progress ...).
    snapshot: dict[str, Any]
    fence: Fence
    created_at: datetime
    seq: int | None = None
    owner_id: int | None = None
    error: BaseException | None = None
    #: The message built from it once committed (by the journal's ``on_committed``).
    message: dict[str, Any] | None = None
    #: ``seq`` was given out before the commit (:meth:`Journal.append`); the commit checks it.
    seq_handed_out: bool = False
    committed: bool = False
    #: ``time.monotonic()`` at hand-in (the publish latency metric starts here).
    handed_in: float = field(default_factory=time.monotonic)

    @property
    def ends_job(self) -> bool:
        """A final status: nothing of the job may share its seq update after it."""
        status = self.snapshot.get("status")
        return status is not None and status not in ACTIVE_STATUSES


@dataclass(eq=False)
class _Batch:
    """Writes handed in since the writer last took them; one wake-up for all their callers."""

    engine: Engine
    writes: list[EventWrite] = field(default_factory=list)
    progress_rows: list[dict[str, Any]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


_jobs = Job.__table__
_events = JobEvent.__table__


class _Executemany:
    """A Core statement run as one executemany; on SQLite compiled once and handed to the
    driver with its parameters processed here.

    SQLAlchemy processes each row's parameters anew (dict building, type lookups) on
    every execution: a third of a typical group commit's CPU, 2 events and 2 progress rows
    took ~190 µs, ~140 µs this way. The statement text and every value are what the Core
    execution would send (the same compiled SQL and bind processors; JSON written compact,
    see :func:`_bind_processor`); its driver errors are wrapped as SQLAlchemy's, and it goes
    through the connection's execution whenever anyone listens to its events. Elsewhere
    the Core execution runs as is: psycopg2 batches an INSERT's rows only there.
    """

    def __init__(self, statement: Any, column_keys: list[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = column_keys
        #: Per dialect: the SQL, and each parameter's name, literal value and bind processor.
        self._prepared: dict[Any, tuple[str, list[tuple[str, Any, Any]]]] = {}

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Execute for ``rows``; the number of rows matched."""
        dialect = conn.dialect
        if dialect.name != "sqlite":
            return int(conn.execute(self.statement, rows).rowcount)
        prepared = self._prepared.get(dialect)
        if prepared is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
            binds = compiled.binds
            parameters = [
                (name, binds[name].effective_value, _bind_processor(binds[name].type, dialect))
                for name in compiled.positiontup or ()
            ]
            prepared = self._prepared[dialect] = (compiled.string, parameters)
        sql, parameters = prepared
        params = [
            tuple(
                row.get(name, literal) if process is None else process(row.get(name, literal))
                for name, literal, process in parameters
            )
            for row in rows
        ]
        if conn._has_events or conn.engine._has_events:
            # Someone watches the connection's statements (a test, tracing): through it.
            return int(conn.exec_driver_sql(sql, params).rowcount)
        # Else straight to the driver's cursor, in the connection's transaction: the
        # execution context SQLAlchemy builds around a statement cost as much as the
        # driver's own work (~25 µs of a group commit's ~65 per statement).
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, params)
            return int(cursor.rowcount)
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
        finally:
            cursor.close()


def _bind_processor(type_: Any, dialect: Any) -> Any:
    """The type's bind processor; a JSON value is written compact by the wire's encoder
    (:mod:`app.json_text`, ~10x the standard library: a typical group commit writes nine
    JSON values), with SQLAlchemy's own handling of NULL."""
    impl = type_.dialect_impl(dialect)
    if isinstance(impl, JSON):
        return impl._make_bind_processor(impl._str_impl.bind_processor(dialect), json_text.dumps)
    return impl.bind_processor(dialect)


#: Durable-event insert; one executemany per transaction.
_INSERT_EVENTS = _Executemany(insert(_events), ["job_id", "seq", "type", "data", "created_at"])
#: Progress-only row update, one executemany for every job whose row is behind. (Not
#: ``status.in_(...)``: an expanding parameter cannot go into an executemany.)
_SAVE_PROGRESS = _Executemany(
    update(_jobs)
    .where((_jobs.c.id == bindparam("_job_id")) & or_(*(_jobs.c.status == status for status in ACTIVE_STATUSES)))
    .values(progress=bindparam("_progress"))
)
_take_seqs_statements: dict[tuple[frozenset[str], str], Update] = {}
_advance_statements: dict[frozenset[str], _Executemany] = {}


def _fence_condition(mode: str) -> ColumnElement[bool]:
    # Not ``in_``: an expanding parameter is rendered anew on every execution.
    active = or_(*(_jobs.c.status == status for status in ACTIVE_STATUSES))
    if mode == "held":
        return active & (_jobs.c.worker_id == bindparam("_holder"))
    if mode == "unclaimed":
        return (_jobs.c.status == "pending") & _jobs.c.worker_id.is_(None)
    if mode == "expired":
        return active & (_jobs.c.lease_expires_at < bindparam("_now"))
    return true()


def _take_seqs_statement(columns: frozenset[str], fence_mode: str) -> Update:
    """``last_seq + count`` plus these snapshot columns under a fence, built once per shape.

    A prepared Core statement with bind parameters: building an ORM update per call costs
    more than the write itself.
    """
    key = (columns, fence_mode)
    statement = _take_seqs_statements.get(key)
    if statement is None:
        snapshot = {_jobs.c[name]: bindparam(f"_v_{name}") for name in columns}
        statement = (
            update(_jobs)
            .where((_jobs.c.id == bindparam("_job_id")) & _fence_condition(fence_mode))
            .values({_jobs.c.last_seq: _jobs.c.last_seq + bindparam("_count"), **snapshot})
            .returning(_jobs.c.last_seq, _jobs.c.owner_id, _jobs.c.counts)
        )
        _take_seqs_statements[key] = statement
    return statement


def _advance_statement(columns: frozenset[str]) -> _Executemany:
    """``last_seq`` from the seq before a run to its last, plus these snapshot columns, for
    a job this process holds: one executemany for every such job of a transaction (a
    statement per job costs more than its row). ``last_seq`` must still be the seq before
    the run, so a row written by anyone else matches nothing."""
    statement = _advance_statements.get(columns)
    if statement is None:
        snapshot = {_jobs.c[name]: bindparam(f"_v_{name}") for name in columns}
        update_statement = (
            update(_jobs)
            .where(
                (_jobs.c.id == bindparam("_job_id"))
                & _fence_condition("held")
                & (_jobs.c.last_seq == bindparam("_before"))
            )
            .values({_jobs.c.last_seq: bindparam("_last"), **snapshot})
        )
        _advance_statements[columns] = statement = _Executemany(update_statement)
    return statement


def _one_advance(runs: list[list[EventWrite]], snapshots: list[dict[str, Any]]) -> bool:
    """Whether a batch's runs can all take one executemany: every write held with its seq
    and owner known ahead (:meth:`Journal.append`), none a final status (its event needs
    the row's counts, read back by the per-job statement), and the same snapshot columns
    throughout (one statement shape)."""
    return (
        bool(runs)
        and all(
            write.fence.mode == "held" and write.seq_handed_out and write.owner_id is not None and not write.ends_job
            for run in runs
            for write in run
        )
        and len({frozenset(values) for values in snapshots}) == 1
    )


def _runs(writes: list[EventWrite]) -> list[list[EventWrite]]:
    """Consecutive writes of one job under one fence share a seq update: ordered by job
    (one lock order for every writer: no deadlocks between processes), a job's writes
    kept in the order handed in, a run closed by a final status (what follows it must
    meet the fence again, and is refused)."""
    by_job: dict[int, list[list[EventWrite]]] = {}
    for write in writes:
        job_runs = by_job.setdefault(write.job_id, [])
        last = job_runs[-1] if job_runs else None
        if last is not None and last[-1].fence == write.fence and not last[-1].ends_job:
            last.append(write)
        else:
            job_runs.append([write])
    return [run for job_id in sorted(by_job) for run in by_job[job_id]]


def _apply(
    conn: Connection, writes: list[EventWrite], progress_rows: list[dict[str, Any]], *, advance: bool = True
) -> None:
    """Take seqs, store the events and progress in ``conn``'s transaction; set each write's
    ``seq``/``owner_id`` or ``error`` (a refused fence fails its own writes, not the rest).

    With ``advance``, a batch of held jobs whose seqs were all handed out ahead takes one
    executemany; raises :class:`AdvanceMissed` (roll back, retry without) if one of its
    rows is not as expected."""
    rows: list[dict[str, Any]] = []
    runs = _runs(writes)
    snapshots = [_snapshot_of(run) for run in runs]
    if advance and conn.dialect.supports_sane_multi_rowcount and _one_advance(runs, snapshots):
        # Every run in one statement, in job-id order like the per-job path (one lock order
        # for every writer); its row count is checked.
        params = [
            {f"_v_{name}": value for name, value in values.items()}
            | {"_job_id": run[0].job_id, "_before": run[0].seq - 1, "_last": run[-1].seq, **run[0].fence.params()}
            for run, values in zip(runs, snapshots, strict=True)
        ]
        matched = _advance_statement(frozenset(snapshots[0])).run(conn, params)
        if matched != len(runs):
            # Some row was not where this process left it (lease lost, job ended or gone).
            raise AdvanceMissed(f"{len(runs) - matched} of {len(runs)} held jobs moved under this process")
        rows.extend(_event_row(write) for run in runs for write in run)
        runs, snapshots = [], []
    for run, values in zip(runs, snapshots, strict=True):
        first, fence = run[0], run[0].fence
        params = {f"_v_{name}": value for name, value in values.items()}
        statement = _take_seqs_statement(frozenset(values), fence.mode)
        row = conn.execute(statement, {"_job_id": first.job_id, "_count": len(run), **params, **fence.params()}).first()
        if row is None:
            current = conn.execute(select(_jobs.c.status, _jobs.c.worker_id).where(_jobs.c.id == first.job_id)).first()
            error: BaseException = JobGone(first.job_id)
            if current is not None:
                error = FenceRefused(first.job_id, current.status, current.worker_id)
            for write in run:
                write.error = error
            continue
        last_seq, owner_id, counts = row
        for offset, write in enumerate(run):
            seq = last_seq - len(run) + 1 + offset
            if write.seq is not None and write.seq != seq:
                raise SeqConflict(f"job {write.job_id}: seq {write.seq} was handed out, the row gives {seq}")
            write.seq, write.owner_id = seq, owner_id
            if write.ends_job and counts is not None and "counts" not in write.data:
                # A job's last word carries its counters as they ended, whoever writes it
                # (a peer settling a dead worker's job knows them only from the row).
                write.data = {**write.data, "counts": counts}
            rows.append(_event_row(write))
    if rows:
        _INSERT_EVENTS.run(conn, rows)
    if progress_rows:
        _SAVE_PROGRESS.run(conn, progress_rows)


def _snapshot_of(run: list[EventWrite]) -> dict[str, Any]:
    """The job columns a run sets: each write's snapshot, the later ones winning."""
    values: dict[str, Any] = {}
    for write in run:
        values.update(write.snapshot)
    return values


def _event_row(write: EventWrite) -> dict[str, Any]:
    return {
        "job_id": write.job_id,
        "seq": write.seq,
        "type": write.type,
        "data": write.data,
        "created_at": write.created_at,
    }


class Journal:
    """The process's durable-event writer; started on first use."""

    def __init__(self, on_committed: Callable[[list[EventWrite]], None]) -> None:
        #: Gets each transaction's committed writes, in seq order per job.
        self.on_committed = on_committed
        #: Writes not yet taken by the writer, per engine (one, except in tests).
        self._pending: dict[Engine, _Batch] = {}
        #: Last seq handed out per job this process holds (learnt from its first commit).
        self._last_seq: dict[int, int] = {}
        #: The owner of each of those jobs (the rooms of its messages), learnt likewise.
        self._owner: dict[int, int] = {}
        #: The batch holding each held job's latest write (what ``settle`` waits for).
        self._latest_batch: dict[int, _Batch] = {}
        #: Jobs whose write failed, with the error their later writes get.
        self._broken: dict[int, BaseException] = {}
        self._lock = non_yielding_lock()
        self._wake: Signal | None = None
        #: The writer's connection per engine, kept while commits keep coming: a checkout
        #: per commit pings the database first (``pool_pre_ping``), a round trip each time.
        self._connections: dict[Engine, Connection] = {}
        #: Called with the connection inside each transaction, where the commit runs (a
        #: test slows it down to prove the loop keeps answering meanwhile).
        self.commit_hook: Callable[[Connection], None] | None = None

    def write(self, engine: Engine, write: EventWrite) -> EventWrite:
        """Hand in ``write`` and wait until it is committed (or refused): ``write.seq`` is set
        then, or ``write.error`` raised."""
        batch = self._hand_in(engine, write=write)
        batch.done.wait()
        if write.error is not None:
            raise write.error
        return write

    def append(self, engine: Engine, write: EventWrite) -> int:
        """Hand in a write of a job this process holds and return its seq without waiting
        for the disk, when the job's last seq is known (else as :meth:`write`).

        Raises the error of an earlier failed write of the job instead of writing.
        """
        batch = self._hand_in(engine, write=write)
        if not write.seq_handed_out or len(batch.writes) >= MAX_BATCH:
            # Unknown seq: learn it from this commit. A full batch: the disk is behind,
            # so the jobs filling it wait for it (memory stays bounded).
            batch.done.wait()
            if write.error is not None:
                raise write.error
        assert write.seq is not None
        return write.seq

    def settle(self, job_id: int) -> None:
        """Wait until every write handed in for ``job_id`` is committed; raise the error
        of one that failed."""
        with self._lock:
            batch = self._latest_batch.get(job_id)
        if batch is not None:
            batch.done.wait()
        with self._lock:
            broken = self._broken.get(job_id)
        if broken is not None:
            raise broken

    def forget(self, job_id: int) -> None:
        """The job ended here (or will be written by others): drop what is known of it."""
        with self._lock:
            self._last_seq.pop(job_id, None)
            self._owner.pop(job_id, None)
            self._latest_batch.pop(job_id, None)
            self._broken.pop(job_id, None)

    def save_progress(self, engine: Engine, rows: list[dict[str, Any]]) -> None:
        """Persist progress rows with the next commit; does not wait."""
        self._hand_in(engine, progress_rows=rows)

    def _hand_in(
        self,
        engine: Engine,
        *,
        write: EventWrite | None = None,
        progress_rows: list[dict[str, Any]] | None = None,
    ) -> _Batch:
        with self._lock:
            if self._wake is None:
                self._wake = new_signal()  # built lazily: after monkey-patching
                socketio.start_background_task(self._writer_loop)
            if write is not None and write.fence.mode == "held":
                broken = self._broken.get(write.job_id)
                if broken is not None:
                    raise broken
                last = self._last_seq.get(write.job_id)
                if last is not None:
                    # Every held write takes the next seq now, waited for or not: the
                    # order of seqs is the order of hand-in, whoever asks.
                    write.seq, write.seq_handed_out = last + 1, True
                    write.owner_id = self._owner.get(write.job_id)
                    self._last_seq[write.job_id] = last + 1
            batch = self._pending.get(engine)
            if batch is None:
                batch = self._pending[engine] = _Batch(engine)
            if write is not None:
                batch.writes.append(write)
                if write.fence.mode == "held":
                    self._latest_batch[write.job_id] = batch
            if progress_rows:
                batch.progress_rows.extend(progress_rows)
        self._wake.set()
        return batch

    def _learn(self, batch: _Batch) -> None:
        """After a batch: the seqs of held jobs, and which of them broke."""
        with self._lock:
            for write in batch.writes:
                if write.fence.mode != "held":
                    continue
                if write.error is not None:
                    self._broken.setdefault(write.job_id, write.error)
                    self._last_seq.pop(write.job_id, None)
                elif write.seq is not None and write.job_id not in self._broken:
                    self._last_seq[write.job_id] = max(self._last_seq.get(write.job_id, 0), write.seq)
                    if write.owner_id is not None:
                        self._owner[write.job_id] = write.owner_id
                if self._latest_batch.get(write.job_id) is batch:
                    del self._latest_batch[write.job_id]

    def _writer_loop(self) -> None:
        """Forever: take what is pending, commit it, hand it on, wake its callers."""
        assert self._wake is not None
        last_commit, last_size = 0.0, 0
        while True:
            if not self._wake.wait(IDLE_RELEASE) and not self._pending:
                self._release_connections()  # quiet: back to the pool (pinged when taken)
            while self._pending:
                # A trickle of writes is gathered until COMMIT_SPACING after the last commit
                # began. A write after a quiet spell goes at once, and so does a stream that
                # fills batches by itself: gathering it would only make each transaction
                # longer, and the OS thread running it holds the interpreter meanwhile.
                gather = last_commit + COMMIT_SPACING - time.monotonic()
                if gather > 0 and last_size < GATHER_BELOW and self._pending_writes() < GATHER_BELOW:
                    socketio.sleep(gather)
                with self._lock:
                    batches, self._pending = list(self._pending.values()), {}
                last_commit = time.monotonic()
                last_size = sum(len(batch.writes) + len(batch.progress_rows) for batch in batches)
                for batch in batches:
                    self._settle(batch)

    def _pending_writes(self) -> int:
        with self._lock:
            return sum(len(batch.writes) + len(batch.progress_rows) for batch in self._pending.values())

    def _settle(self, batch: _Batch) -> None:
        """Commit one batch, hand on what was committed, wake every caller."""
        started = time.monotonic()
        try:
            self._commit(batch)
        except BaseException as exc:  # noqa: BLE001 - every caller must wake, whatever happened
            log.exception("journal commit failed")
            for write in batch.writes:
                if write.error is None and not write.committed:
                    write.error = exc
        self._learn(batch)
        committed = [write for write in batch.writes if write.committed]
        self._measure(batch, committed, started)
        try:
            if committed:
                self.on_committed(committed)
        except Exception:
            log.exception("handing on committed events failed")
        finally:
            batch.done.set()

    @staticmethod
    def _measure(batch: _Batch, committed: list[EventWrite], started: float) -> None:
        now = time.monotonic()
        COMMIT_SECONDS.observe(now - started)
        if batch.writes:
            COMMIT_BATCH_EVENTS.observe(len(batch.writes))
        EVENTS_COMMITTED.inc(len(committed))
        for write in committed:
            PUBLISH_SECONDS.observe(now - write.handed_in)
        for write in batch.writes:
            if write.error is not None:
                EVENTS_REFUSED.labels(type(write.error).__name__).inc()

    def _commit(self, batch: _Batch) -> None:
        """One transaction for the batch; if it fails, each write alone (one bad write
        must not fail the others)."""
        engine = batch.engine
        failed = False
        #: Set once a transaction asks for its COMMIT: past that point a lost connection
        #: may have committed, so the batch is not sent again.
        committing = False

        def transaction(
            connection: Connection, writes: list[EventWrite], progress_rows: list[dict[str, Any]], advance: bool
        ) -> None:
            nonlocal committing
            try:
                with connection.begin() as outer:
                    if self.commit_hook is not None:
                        self.commit_hook(connection)
                    _apply(connection, writes, progress_rows, advance=advance)
                    committing = True
                    outer.commit()
                for write in writes:
                    write.committed = write.error is None
            except BaseException:
                for write in writes:  # rolled back: no seq was taken (handed-out ones stay)
                    if not write.seq_handed_out:
                        write.seq = None
                    write.owner_id = None
                raise

        def attempt(writes: list[EventWrite], progress_rows: list[dict[str, Any]], advance: bool = False) -> None:
            nonlocal committing
            committing = False
            for write in writes:
                write.error = None
            connection = self._connection_for(engine)  # on the loop: the pool's locks are green
            write_off_the_loop(engine, lambda: transaction(connection, writes, progress_rows, advance))

        try:
            try:
                try:
                    attempt(batch.writes, batch.progress_rows, advance=True)
                except DBAPIError as exc:
                    if not exc.connection_invalidated or committing:
                        raise
                    # The kept connection had died before this transaction reached the
                    # database (it restarted meanwhile): once more on a fresh connection.
                    self._release_connection(engine)
                    attempt(batch.writes, batch.progress_rows, advance=True)
            except AdvanceMissed:
                # A held job's row moved: again, each job on its own statement, which
                # refuses that job's writes alone (and says why) and stores the rest.
                attempt(batch.writes, batch.progress_rows)
        except Exception:
            failed = True
            self._release_connection(engine)  # whatever failed, a fresh connection next
            if len(batch.writes) + bool(batch.progress_rows) <= 1:
                raise
            log.warning("a group commit of %d events failed; committing them one by one", len(batch.writes))
            for write in batch.writes:
                try:
                    attempt([write], [])
                except Exception as exc:
                    write.error = exc
                    self._release_connection(engine)
            if batch.progress_rows:
                try:
                    attempt([], batch.progress_rows)
                except Exception:
                    log.exception("persisting progress failed")
                    self._release_connection(engine)
        except BaseException:
            failed = True
            raise
        finally:
            if failed:
                # The next batch starts on a connection checked out (and pinged) afresh.
                self._release_connection(engine)

    def _connection_for(self, engine: Engine) -> Connection:
        """The writer's kept connection to ``engine``, checked out when there is none."""
        connection = self._connections.get(engine)
        if connection is None or connection.closed:
            connection = self._connections[engine] = engine.connect()
        return connection

    def _release_connection(self, engine: Engine) -> None:
        connection = self._connections.pop(engine, None)
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a dead connection cannot be closed cleanly
                log.debug("closing the journal's connection failed", exc_info=True)

    def _release_connections(self) -> None:
        for engine in list(self._connections):
            self._release_connection(engine)
