"""Job artifacts: files a job produced (report CSV/HTML/XLSX), stored under ``ARTIFACT_DIR``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow


class Artifact(db.Model):
    """One named output file of a job; readable by the job's owner only."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_artifacts_job_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    #: ``<report>.<format>``, also the download name.
    name: Mapped[str] = mapped_column(String(160))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Path relative to ``ARTIFACT_DIR`` (server-generated).
    stored_name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """The listing entry (the route adds the download ``url``)."""
        return {"name": self.name, "content_type": self.content_type, "size": self.size}
