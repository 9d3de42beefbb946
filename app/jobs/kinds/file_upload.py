"""``file_upload``: the job that carries an upload's status, history and progress.

``POST /api/uploads`` drives it from inside the request (see ``app/jobs/upload_receiver.py``):
it creates the job, publishes its statuses and ``file_upload_progress`` ticks while the
body streams to disk. It is not submittable, and the runner never has anything to run.
"""

from __future__ import annotations

from typing import Any

from ..context import JobContext, JobFailed
from ..registry import job_kind


@job_kind(
    "file_upload",
    title="File upload",
    progress_type="file_upload_progress",
    submittable=False,
    queued=False,
    schema={
        "properties": {
            "upload_id": {"type": "string"},
            "filename": {"type": "string"},
            "total_bytes": {"type": "integer"},
        }
    },
)
def file_upload(ctx: JobContext, params: dict[str, Any]) -> None:
    """Receives a file sent to ``POST /api/uploads``; progress is request-body bytes."""
    raise JobFailed("uploads are received by POST /api/uploads, not run as jobs", code="not_runnable")
