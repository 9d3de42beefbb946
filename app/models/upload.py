"""Uploaded files: one row per file, stored on disk under ``UPLOAD_DIR`` by id.

The upload's lifecycle is a ``file_upload`` job (status, history, replay like every job);
the row holds what the finished file is: its safe name, size, hash and where it lives.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, isoformat, utcnow


class Upload(db.Model):
    """One file a user sent; ``upload_id`` is unique per user, the path never comes from the client."""

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("owner_id", "upload_id", name="uq_uploads_owner_upload"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The client-facing id (``[A-Za-z0-9_-]{1,64}``), given or generated.
    upload_id: Mapped[str] = mapped_column(String(64))
    #: The sanitised original name (for display and the default import format only).
    filename: Mapped[str] = mapped_column(String(255))
    #: The file's name inside ``UPLOAD_DIR`` (server-generated).
    stored_name: Mapped[str] = mapped_column(String(128))
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The ``file_upload`` job that carries the upload's status and progress.
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: ``receiving``, ``completed``, ``failed`` or ``cancelled`` (mirrors the job's final status).
    status: Mapped[str] = mapped_column(String(16), default="receiving")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """The upload as clients see it."""
        return {
            "upload_id": self.upload_id,
            "filename": self.filename,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "job_id": self.job_id,
            "status": self.status,
            "created_at": isoformat(self.created_at),
        }
