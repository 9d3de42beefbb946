"""The process's Prometheus metrics: defined here, updated where things happen.

Counters and histograms are updated where things happen (a lock and an add), except on
the delivery path: there a counter would take a lock per fan-out or ticker round, so
those counts are kept in plain integers (:class:`DeferredCount`) and added when
``/metrics`` is scraped (:func:`add_deferred_counts`). What is cheaper to read than to
track (connections, subscriptions, jobs by status) is gathered then too. Each process
exposes its own numbers: one process's metrics never need another's.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: Every deferred count of the process (module-level singletons, one per figure).
_deferred: list[DeferredCount] = []


class DeferredCount:
    """A count kept as a plain integer on a hot path and added to its counters (already
    labelled) before each scrape. ``pending += n`` takes no lock: under threading mode two
    threads adding at once may lose one add, which a metric can afford."""

    def __init__(self, *counters: Counter) -> None:
        self.pending = 0
        self._counters = counters
        _deferred.append(self)

    def flush(self) -> None:
        """Add what is pending to the counters."""
        count, self.pending = self.pending, 0
        if count:
            for counter in self._counters:
                counter.inc(count)


def add_deferred_counts() -> None:
    """Before a scrape: every deferred count into its counters."""
    for count in _deferred:
        count.flush()


#: Durable events committed by this process's journal.
EVENTS_COMMITTED = Counter("herald_events_committed_total", "Durable events committed by the journal")
#: Durable events that could not be stored (a refused fence, a database error).
EVENTS_REFUSED = Counter("herald_events_refused_total", "Durable events refused at commit", ["reason"])
#: One group commit: from taking the batch to its end (includes the wait for the disk).
COMMIT_SECONDS = Histogram(
    "herald_commit_seconds",
    "Duration of one journal transaction (group commit)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
#: Events per group commit.
COMMIT_BATCH_EVENTS = Histogram(
    "herald_commit_batch_events",
    "Durable events per journal transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
#: From hand-in to commit of one durable event (what a watcher's latency starts with).
PUBLISH_SECONDS = Histogram(
    "herald_publish_seconds",
    "From a durable event's hand-in to its commit",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
#: Coalesced progress ticks sent (at most one per job per PROGRESS_INTERVAL).
PROGRESS_TICKS = Counter("herald_progress_ticks_total", "Coalesced progress ticks sent")
#: Messages handed to the delivery layer (one per message, whatever the watcher count).
MESSAGES_PUBLISHED = Counter("herald_messages_published_total", "Messages sent through the outbox", ["kind"])
#: Messages written to sockets, by transport and by path (``direct``: straight to the
#: socket; ``queued``: through the connection's writer).
MESSAGES_DELIVERED = Counter(
    "herald_messages_delivered_total", "Messages written to client connections", ["transport", "path"]
)
#: Connections cut off for not reading (send queue full), by transport.
CONNECTIONS_DROPPED = Counter(
    "herald_connections_dropped_total", "Connections closed for a full send queue", ["transport"]
)
#: Subscriptions that asked to resume from a ``last_seq``: ``complete`` when every missed
#: durable event was replayed, ``resync`` when the history could not cover the gap and the
#: client had to start again from the snapshot (both series exist from the start).
RESUMES = Counter("herald_resumes_total", "Subscriptions resumed from a last_seq, by result", ["result"])
RESUMED_COMPLETE = RESUMES.labels("complete")
RESUMED_RESYNC = RESUMES.labels("resync")
#: Durable events deleted by the history retention (``HISTORY_MAX_*`` settings).
HISTORY_EVENTS_TRIMMED = Counter("herald_history_events_trimmed_total", "Durable events deleted by history retention")
#: Messages discarded with a connection cut off for not reading, by transport.
MESSAGES_DROPPED = Counter(
    "herald_messages_dropped_total", "Messages discarded with a connection cut off for not reading", ["transport"]
)
#: Webhook delivery attempts by outcome: ``delivered`` (a 2xx answer), ``retry`` (failed,
#: tried again later), ``failed`` (failed, and retries ran out after WEBHOOK_RETRY_FOR_SECONDS).
WEBHOOK_DELIVERIES = Counter("herald_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["result"])
for _result in ("delivered", "retry", "failed"):
    WEBHOOK_DELIVERIES.labels(_result)
