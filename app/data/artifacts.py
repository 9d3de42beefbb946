"""Job artifacts on disk: ``ARTIFACT_DIR/<job id>/<name>``, one row each."""

from __future__ import annotations

import os

from flask import current_app
from sqlalchemy import insert, select

from ..database import write_transaction
from ..errors import NotFound
from ..extensions import db
from ..models import Artifact, utcnow


def artifact_dir(job_id: int) -> str:
    """The job's artifact folder (created)."""
    path = os.path.join(current_app.config["ARTIFACT_DIR"], str(job_id))
    os.makedirs(path, exist_ok=True)
    return path


def record_artifact(job_id: int, name: str, content_type: str) -> None:
    """Register a file the job wrote into its folder."""
    stored = os.path.join(str(job_id), name)
    size = os.path.getsize(os.path.join(current_app.config["ARTIFACT_DIR"], stored))
    with write_transaction() as conn:
        conn.execute(
            insert(Artifact).values(
                job_id=job_id, name=name, content_type=content_type, size=size, stored_name=stored, created_at=utcnow()
            )
        )


def job_artifacts(job_id: int) -> list[Artifact]:
    """A job's artifacts, by name."""
    return list(db.session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)))


def get_artifact(job_id: int, name: str) -> tuple[Artifact, str]:
    """One artifact and its absolute path, or ``NotFound``."""
    artifact = db.session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
    if artifact is None:
        raise NotFound(f"job {job_id} has no artifact {name!r}")
    path = os.path.join(current_app.config["ARTIFACT_DIR"], artifact.stored_name)
    if not os.path.isfile(path):
        raise NotFound(f"the file of artifact {name!r} is gone")
    return artifact, path
