"""``external``: a job that a program outside Herald runs and reports into.

``POST /api/jobs {"kind": "external", "name", "total?"}`` creates it together with a
producer token; the producer reports over ``POST /api/jobs/<id>/report``
(``app/jobs/producers.py``). No runner ever claims it (``queued=False``). ``submittable``
is False: ``{kind, params}`` alone does not start a run of it (the New-job form, a workflow
step, Re-run); ``POST /api/jobs`` creates one through its own path, answering the token.
"""

from __future__ import annotations

from typing import Any

from ..context import JobContext, JobFailed
from ..registry import job_kind


@job_kind(
    "external",
    title="External",
    submittable=False,
    queued=False,
    schema={
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200, "description": "What the producer runs"},
            "total": {"type": ["number", "null"], "minimum": 0, "description": "Units of work, if known"},
        },
    },
)
def external(ctx: JobContext, params: dict[str, Any]) -> None:
    """Run by a program outside Herald, which reports progress, logs and its end over REST;
    created by ``POST /api/jobs {"kind": "external", "name"}`` (which answers its producer
    token), never from the New-job form: hence ``submittable: false``.

    Herald never calls this: no runner claims an external job."""
    raise JobFailed("external jobs are run by their producer, not by Herald", code="not_runnable")
