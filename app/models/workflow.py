"""Workflows: a named list of job steps a user can execute again and again (seed 004)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, isoformat, utcnow


class Workflow(db.Model):
    """Steps ``[{kind, params}]``; params may use ``${input.x}`` and ``${steps.<n>.result.y}``.

    An execution is a ``workflow`` job that copies the steps, so editing or deleting the
    workflow never changes an execution that already started.
    """

    __tablename__ = "workflows"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """The REST representation."""
        return {
            "id": self.id,
            "name": self.name,
            "steps": self.steps,
            "owner_id": self.owner_id,
            "created_at": isoformat(self.created_at),
        }
