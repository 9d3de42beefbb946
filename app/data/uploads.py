"""Upload records and their files: ownership, paths, deletion, and settling the ones a
dead server left half received.

Job kinds read uploads through here (``data_import``), so this module knows no transport:
receiving a body — a ``file_upload`` job driven by its request — is
``app/jobs/upload_receiver.py``.
"""

from __future__ import annotations

import os

from flask import current_app
from sqlalchemy import select

from ..database import commit_session
from ..errors import Conflict, NotFound
from ..extensions import db
from ..inputs import is_client_id
from ..models import Job, JobStatus, Upload


def get_owned_upload(owner_id: int, upload_id: str) -> Upload:
    """The user's upload, or ``NotFound`` (also for other users' uploads)."""
    upload = None
    if is_client_id(upload_id):
        upload = db.session.scalar(select(Upload).where(Upload.owner_id == owner_id, Upload.upload_id == upload_id))
    if upload is None:
        raise NotFound(f"upload {upload_id!r} not found")
    return reconcile_upload(upload)


def reconcile_upload(upload: Upload) -> Upload:
    """An upload left ``receiving`` by a server that died: its job was swept to a final
    state, so the upload is ``failed`` and its partial file removed."""
    if upload.status != "receiving" or upload.job_id is None:
        return upload
    job = db.session.get(Job, upload.job_id)
    if job is not None and JobStatus(job.status).is_final:
        try:
            os.unlink(upload_path(upload) + ".part")
        except FileNotFoundError:
            pass
        upload.status = "failed"
        commit_session()
    return upload


def reconcile_interrupted_uploads() -> int:
    """At start-up, after the sweep: settle every upload a dead server left ``receiving``."""
    uploads = list(db.session.scalars(select(Upload).where(Upload.status == "receiving")))
    settled = sum(1 for upload in uploads if reconcile_upload(upload).status == "failed")
    db.session.rollback()
    return settled


def upload_path(upload: Upload) -> str:
    """Where an upload's bytes live (the name is server-generated)."""
    return os.path.join(current_app.config["UPLOAD_DIR"], upload.stored_name)


def delete_upload(upload: Upload) -> None:
    """Remove a finished upload's file and row."""
    if upload.status == "receiving":
        raise Conflict(f"upload {upload.upload_id!r} is still being received", code="upload_in_progress")
    try:
        os.unlink(upload_path(upload))
    except FileNotFoundError:
        pass
    db.session.delete(upload)
    commit_session()
