"""Datasets: named, typed tables of imported rows, owned by one user.

Rows are stored in *pages*: one database row holds up to ``PAGE_ROWS`` rows as one JSON
array of value arrays (column order), tagged with the import job that wrote them. One
insert and one JSON encode per page instead of per row is what lets an import reach
~100k rows/s on SQLite. A dataset's visible rows are those of its *live* imports (``live_imports``): an
import's rows become visible in the one short transaction that adds its job id there, so a
failed import rolls back by simply never becoming live (its rows are then deleted), and a
``replace`` import swaps the whole content at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, isoformat, utcnow


class Dataset(db.Model):
    """A user's named dataset: its columns (name and type) and which imports are live."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_datasets_owner_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: ``[{"name": ..., "type": "string|integer|number|boolean"}, ...]`` in storage order.
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: Import job ids whose rows are visible.
    live_imports: Mapped[list[int]] = mapped_column(JSON, default=list)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """The dataset as clients see it (schema and row count, not rows)."""
        return {
            "name": self.name,
            "columns": self.columns,
            "row_count": self.row_count,
            "imports": self.live_imports,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


class DatasetPage(db.Model):
    """Consecutive imported rows of one import: ``[[v, v, ...], ...]`` in column order."""

    __tablename__ = "dataset_pages"
    __table_args__ = (Index("ix_dataset_pages_import_id", "import_job_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(Integer)
    import_job_id: Mapped[int] = mapped_column(Integer)
    row_count: Mapped[int] = mapped_column(Integer)
    #: JSON array of rows, each an array of values in the dataset's column order.
    data: Mapped[str] = mapped_column(Text)
