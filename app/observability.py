"""What ``/health``, ``/ready`` and ``/metrics`` report: dependency checks and process state.

Hot-path numbers are counted where they happen (``app.metrics``). What is cheaper to read
than to track — open connections, subscriptions, jobs by status and kind, database and
message-queue health — is read by :class:`StateCollector` when ``/metrics`` is scraped.
A part that cannot be read is skipped and counted in ``herald_scrape_errors_total``: a
scrape never fails because the database or the queue does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from flask import current_app, has_app_context
from prometheus_client import REGISTRY, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from .extensions import db, socketio

log = logging.getLogger(__name__)

#: Longest the jobs-by-status query may run at scrape time, in milliseconds.
JOBS_QUERY_TIMEOUT_MS = 500
#: How long one jobs count is reused: several scrapers (or a hostile caller) cost one query.
JOBS_CACHE_SECONDS = 1.0
#: Transport label values, the same as in ``herald_messages_delivered_total``.
SOCKETIO, PLAIN, SSE = "socketio", "plain", "sse"
#: The parts of a scrape that may fail on their own (each has an error series from the start).
SCRAPE_PARTS = ("connections", "subscriptions", "database", "jobs", "message_queue")


def queue_status() -> dict[str, Any]:
    """The message queue as ``/health`` shows it: ``ok``, ``degraded`` with a ``reason``,
    or ``disabled`` without ``MESSAGE_QUEUE_URL``."""
    message_queue = current_app.extensions["herald_queue_probe"].check()
    outage = getattr(socketio.server.manager, "outage", None)  # Redis answers, but this process's link is broken
    if outage and message_queue["status"] == "ok":
        message_queue = {**message_queue, "status": "degraded", "reason": outage}
    return dict(message_queue)


def dependency_status() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(database, message_queue)``: each ``ok``, ``degraded`` with a ``reason``, or (the
    queue only) ``disabled``. The same checks back ``/health``, ``/ready`` and ``/metrics``."""
    from .database import check_database

    return check_database(), queue_status()


def count_jobs(timeout_ms: int = JOBS_QUERY_TIMEOUT_MS) -> dict[tuple[str, str], int]:
    """Jobs by ``(status, kind)``: one GROUP BY, cut off after ``timeout_ms``.

    PostgreSQL gets a ``statement_timeout``; SQLite (which holds the whole process while it
    reads under eventlet) a progress handler that aborts the query past the deadline.
    """
    from .models import Job

    query = select(Job.status, Job.kind, func.count()).group_by(Job.status, Job.kind)
    with db.engine.connect() as connection:
        raw = None
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
        elif connection.dialect.name == "sqlite":
            raw = connection.connection.dbapi_connection
            deadline = time.monotonic() + timeout_ms / 1000

            def past_deadline() -> int:
                return 1 if time.monotonic() > deadline else 0

            raw.set_progress_handler(past_deadline, 10_000)  # type: ignore[union-attr]
        try:
            rows = connection.execute(query).all()
        finally:
            if raw is not None:
                raw.set_progress_handler(None, 0)  # type: ignore[attr-defined]
            connection.rollback()
    return {(str(status), str(kind)): int(count) for status, kind, count in rows}


def subscriptions_by_transport() -> dict[str, int]:
    """Live subscriptions (connection, job) of this process, by transport."""
    from .realtime.delivery import ledger

    totals = {SOCKETIO: 0, PLAIN: 0, SSE: 0}
    for conn, count in ledger.counts().items():
        totals[SOCKETIO if isinstance(conn, str) else conn.transport] += count  # a sid is a str
    return totals


def connections_by_transport() -> dict[str, int]:
    """Open connections of this process, by transport (plain ones before auth included)."""
    from .realtime.connections import connection_counts

    counts = connection_counts()
    return {SOCKETIO: counts["socketio"], PLAIN: counts["websocket"], SSE: counts["sse"]}


#: name → (type, labels, documentation) of everything the collector exposes.
STATE_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "herald_connections": ("gauge", ("transport",), "Open client connections of this process"),
    "herald_subscriptions": ("gauge", ("transport",), "Job subscriptions (connection, job) of this process"),
    "herald_jobs": ("gauge", ("status", "kind"), "Jobs in the database by status and kind (alike in every process)"),
    "herald_database_up": ("gauge", (), "1 when the database answers, 0 when it does not"),
    "herald_message_queue_up": ("gauge", (), "1 when the message queue is usable, else 0 (absent without one)"),
    "herald_scrape_errors": ("counter", ("part",), "Parts of a /metrics scrape that could not be read"),
}


def _family(name: str) -> Metric:
    """An empty family of one of :data:`STATE_METRICS`."""
    kind, labels, documentation = STATE_METRICS[name]
    family_class = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return family_class(name, documentation, labels=list(labels) if labels else None)


class StateCollector(Collector):
    """Reads process and database state at scrape time (registered once per process)."""

    def __init__(self) -> None:
        self._errors: Tally[str] = Tally()
        self._lock = threading.Lock()
        #: (app, when, counts) of the last jobs query; each test app has its own database.
        self._jobs_cache: tuple[Any, float, dict[tuple[str, str], int]] | None = None

    def describe(self) -> Iterator[Metric]:
        """The names only: registering must not read the database."""
        for name in STATE_METRICS:
            yield _family(name)

    def collect(self) -> Iterator[Metric]:
        yield from self._part("connections", self._connections)
        yield from self._part("subscriptions", self._subscriptions)
        if has_app_context():
            yield from self._part("database", self._database)
            yield from self._part("message_queue", self._message_queue)
        errors = _family("herald_scrape_errors")
        with self._lock:
            for part in sorted(set(SCRAPE_PARTS) | set(self._errors)):
                errors.add_metric([part], self._errors[part])
        yield errors

    def _part(self, part: str, read: Any) -> list[Metric]:
        """``read()``'s metrics, or none (and one more scrape error) when it fails."""
        try:
            return list(read())
        except Exception as exc:
            log.warning("metrics: reading %s failed (%s: %s)", part, type(exc).__name__, exc)
            with self._lock:
                self._errors[part] += 1
            return []

    def _connections(self) -> Iterator[Metric]:
        family = _family("herald_connections")
        for transport, count in connections_by_transport().items():
            family.add_metric([transport], count)
        yield family

    def _subscriptions(self) -> Iterator[Metric]:
        family = _family("herald_subscriptions")
        for transport, count in subscriptions_by_transport().items():
            family.add_metric([transport], count)
        yield family

    def _database(self) -> Iterator[Metric]:
        """Jobs by status and kind; the database is up when that query (or ``SELECT 1``) answers."""
        up = _family("herald_database_up")
        try:
            jobs = self._cached_job_counts()
        except Exception as exc:
            from .database import check_database

            log.warning("metrics: counting jobs failed (%s: %s)", type(exc).__name__, exc)
            with self._lock:
                self._errors["jobs"] += 1
            up.add_metric([], 1 if check_database()["status"] == "ok" else 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        family = _family("herald_jobs")
        for (status, kind), count in sorted(jobs.items()):
            family.add_metric([status, kind], count)
        yield family

    def _cached_job_counts(self) -> dict[tuple[str, str], int]:
        """Counts with a zero for every status of every registered kind, reused for a second."""
        from .jobs.registry import all_kinds
        from .models import JobStatus

        app = current_app._get_current_object()  # type: ignore[attr-defined]
        cached = self._jobs_cache
        if cached is not None and cached[0] is app and time.monotonic() - cached[1] < JOBS_CACHE_SECONDS:
            return cached[2]
        counts = {(status.value, kind.name): 0 for kind in all_kinds() for status in JobStatus}
        counts.update(count_jobs())
        self._jobs_cache = (app, time.monotonic(), counts)
        return counts

    def _message_queue(self) -> Iterator[Metric]:
        queue = queue_status()
        if queue["status"] == "disabled":
            return
        up = _family("herald_message_queue_up")
        up.add_metric([], 1 if queue["status"] == "ok" else 0)
        yield up


_installed: dict[str, StateCollector] = {}
_install_lock = threading.Lock()


def install_state_collector() -> StateCollector:
    """Register the collector on the default registry, once per process (apps come and go).

    Also drops prometheus-client's ``*_created`` series: one extra gauge per counter and
    histogram that Prometheus does not use with the text format.
    """
    with _install_lock:
        collector = _installed.get("collector")
        if collector is None:
            disable_created_metrics()
            collector = _installed["collector"] = StateCollector()
            REGISTRY.register(collector)
        return collector
