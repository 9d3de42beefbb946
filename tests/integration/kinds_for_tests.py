"""Job kinds that exist only in the test server (``serve_with_test_kinds.py``)."""

from __future__ import annotations

import os
import time
from typing import Any

from app.jobs.context import JobContext
from app.jobs.registry import job_kind


@job_kind(
    "test_report_ticks",
    schema={
        "properties": {"steps": {"type": "integer", "default": 5}, "interval": {"type": "number", "default": 0.05}}
    },
    progress_type="batch_report_progress",
)
def report_ticks(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Reports ``batch_report_progress`` ticks like the report kinds do (seed 002)."""
    for step in range(1, params["steps"] + 1):
        ctx.sleep(params["interval"])
        ctx.progress(step, params["steps"], f"report {step}")
    return {"reports": params["steps"]}


@job_kind(
    "test_counted_batch",
    schema={
        "properties": {"cases": {"type": "integer", "default": 4}, "interval": {"type": "number", "default": 0.05}}
    },
)
def counted_batch(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Fills ``Job.counts`` like a batch execution does (seed 000): one case at a time."""
    total = params["cases"]
    counts = {"success_count": 0, "failed_count": 0, "running_count": 0, "pending_count": total, "total_count": total}
    ctx.update_counts(counts)
    for case in range(total):
        ctx.sleep(params["interval"])
        counts["pending_count"] -= 1
        if case % 3 == 2:
            counts["failed_count"] += 1
        else:
            counts["success_count"] += 1
        ctx.update_counts(counts)
    return {"passed": counts["success_count"], "failed": counts["failed_count"]}


@job_kind(
    "test_chatty",
    schema={
        "properties": {
            "lines": {"type": "integer", "default": 100},
            "size": {"type": "integer", "default": 1000},
            "interval": {"type": "number", "default": 0.01},
            "gate": {"type": ["string", "null"], "default": None},
        }
    },
)
def chatty(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Many durable log lines of a given size, then progress (fan-out and slow-client tests).

    With ``gate`` (a file path) it waits for that file first, so that every client can
    subscribe before the lines go out live.
    """
    gate = params["gate"]
    while gate and not os.path.exists(gate):
        ctx.sleep(0.05)
    filler = "x" * params["size"]
    for line in range(1, params["lines"] + 1):
        ctx.log(f"line {line} {filler}")
        ctx.progress(line, params["lines"])
        ctx.sleep(params["interval"])
    return {"lines": params["lines"]}


@job_kind(
    "test_lost_emit",
    schema={
        "properties": {
            "lines": {"type": "integer", "default": 10},
            "lose": {"type": "integer", "default": 5},
            "interval": {"type": "number", "default": 0.05},
            "gate": {"type": ["string", "null"], "default": None},
        }
    },
)
def lost_emit(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Durable log lines; line ``lose`` is committed but never sent, as if lost in transit.

    Clients must notice the gap in seqs and fetch the missing event (seq gap recovery).
    With ``gate`` (a file path) the lines wait for that file, so clients subscribe first.
    """
    from app.realtime.pipeline import pipeline

    while params["gate"] and not os.path.exists(params["gate"]):
        ctx.sleep(0.05)
    for line in range(1, params["lines"] + 1):
        if line == params["lose"]:
            # Committed, then dropped on its way to the outbox: the earlier lines are out of
            # the way first, and this one is stored before the outbox is itself again.
            pipeline.settle(ctx.job_id)
            pipeline.outbox.put = lambda *args: None  # type: ignore[method-assign]
            try:
                ctx.log(f"line {line} (never sent live)")
                pipeline.settle(ctx.job_id)
            finally:
                del pipeline.outbox.put  # back to the class's method
        else:
            ctx.log(f"line {line}")
        ctx.sleep(params["interval"])
    return {"lines": params["lines"]}


@job_kind("test_slow_commit", schema={"properties": {"marker": {"type": "string"}, "gate": {"type": "string"}}})
def slow_commit(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """One log line whose group commit stays in flight until ``gate`` exists (``marker``
    is created once it is): meanwhile the event loop must keep serving everyone else.

    On SQLite the commit runs in an OS thread and the hook blocks that thread for real; on
    PostgreSQL the commit is green I/O and the hook keeps the server busy with pg_sleep.
    """
    from app.realtime.pipeline import pipeline

    def hold(connection: Any) -> None:
        pipeline.journal.commit_hook = None  # this transaction only
        open(params["marker"], "w").close()
        while not os.path.exists(params["gate"]):
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SELECT pg_sleep(0.05)")
            else:
                real_sleep(0.05)

    pipeline.journal.commit_hook = hold
    seq = ctx.log("committed after the gate opened")
    return {"seq": seq}


def real_sleep(seconds: float) -> None:
    """``time.sleep`` as it was before monkey-patching: blocks the OS thread it runs in."""
    mode = os.environ.get("SOCKETIO_ASYNC_MODE", "eventlet")
    if mode == "eventlet":
        from eventlet.patcher import original

        original("time").sleep(seconds)
    elif mode == "gevent":
        from gevent.monkey import get_original

        get_original("time", "sleep")(seconds)
    else:
        time.sleep(seconds)
