"""``/api/jobs/<id>/artifacts``: files a job produced (report CSV/HTML/XLSX), owner only."""

from __future__ import annotations

from typing import Any

from flask import Response, send_file, url_for

from ..auth.tokens import current_user
from ..data.artifacts import get_artifact, job_artifacts
from ..data.reports import CONTENT_TYPES
from ..jobs.service import get_owned_job
from . import bp
from .schema import files, spec


@bp.get("/jobs/<id:job_id>/artifacts")
@spec(
    responses={
        200: {
            "type": "object",
            "required": ["job_id", "artifacts"],
            "properties": {"job_id": {"type": "integer"}, "artifacts": {"type": "array"}},
        }
    }
)
def list_artifacts(job_id: int) -> dict[str, Any]:
    """A job's artifacts ``[{name, content_type, size, url}]``."""
    job = get_owned_job(current_user().id, job_id)
    return {
        "job_id": job.id,
        "artifacts": [
            {**a.to_dict(), "url": url_for("api.download_artifact", job_id=job.id, name=a.name)}
            for a in job_artifacts(job.id)
        ],
    }


@bp.get("/jobs/<id:job_id>/artifacts/<name>")
@spec(responses={200: files(*CONTENT_TYPES.values())})
def download_artifact(job_id: int, name: str) -> Response:
    """Download one artifact with its content type and ``<report>.<format>`` as file name."""
    job = get_owned_job(current_user().id, job_id)
    artifact, path = get_artifact(job.id, name)
    return send_file(path, mimetype=artifact.content_type, as_attachment=True, download_name=artifact.name)
