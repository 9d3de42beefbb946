"""``simulate``: a demo and test kind that only sleeps and reports. It does no real work."""

from __future__ import annotations

import time
from typing import Any

from ..context import JobContext, JobFailed
from ..registry import job_kind


@job_kind(
    "simulate",
    title="Simulate (demo)",
    schema={
        "properties": {
            "steps": {
                "title": "Steps",
                "type": "integer",
                "minimum": 1,
                "maximum": 1_000_000,
                "default": 20,
                "description": "How many steps to take",
            },
            "interval": {
                "title": "Seconds per step",
                "type": "number",
                "minimum": 0,
                "maximum": 60,
                "default": 0.2,
                "description": "Seconds per step (a steady cadence: step N ends N intervals after the start)",
            },
            "log_every": {
                "title": "Log every N steps",
                "type": "integer",
                "minimum": 0,
                "default": 10,
                "description": "A log line every N steps (0: none)",
            },
            "fail_at": {
                "title": "Fail at step",
                "type": ["integer", "null"],
                "minimum": 1,
                "default": None,
                "description": "Fail when reaching this step (empty: never)",
            },
        },
    },
)
def simulate(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Demo job for tests and the test page: progress every step, a log line every 10 steps.

    It does no real work; real kinds (uploads, imports, reports, API tests) live beside it.
    """
    steps: int = params["steps"]
    interval: float = params["interval"]
    fail_at: int | None = params.get("fail_at")
    log_every: int = params["log_every"]
    ctx.log(f"simulating {steps} steps, {interval}s each")
    started = time.monotonic()
    for step in range(1, steps + 1):
        if interval:
            # On a steady cadence: step N ends N intervals after the start, however long
            # reporting took (a job watched by many keeps the pace it was asked for).
            ctx.sleep(started + step * interval - time.monotonic())
        else:
            ctx.raise_if_cancelled()
        if fail_at is not None and step == fail_at:
            raise JobFailed(f"simulated failure at step {step}", code="simulated_failure")
        ctx.progress(step, steps, f"step {step} of {steps}")
        if log_every and step % log_every == 0:
            ctx.log(f"reached step {step}")
    return {"steps": steps}
