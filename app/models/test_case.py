"""API test cases (seed 003 YAML) and the stored result of each run, per case and step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, isoformat, utcnow


class TestCase(db.Model):
    """One user's test case: the YAML as written plus its checked form."""

    __tablename__ = "test_cases"
    __test__ = False  # not a pytest class

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The YAML as submitted (JSON submissions are stored as YAML).
    source: Mapped[str] = mapped_column(Text)
    #: The checked case the engine runs.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self, *, with_source: bool = True) -> dict[str, Any]:
        """REST representation."""
        data: dict[str, Any] = {
            "id": self.id,
            "owner_id": self.owner_id,
            "name": self.name,
            "description": self.description,
            "total_steps": len(self.spec.get("steps") or []),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }
        if with_source:
            data["source"] = self.source
            data["spec"] = self.spec
        return data


class TestCaseResult(db.Model):
    """One run of a test case: outcome plus per-step request, response, timing, assertions."""

    __tablename__ = "test_case_results"
    __test__ = False
    __table_args__ = (Index("ix_test_case_results_case_created", "test_case_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    test_case_id: Mapped[int] = mapped_column(ForeignKey("test_cases.id", ondelete="CASCADE"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, index=True)
    #: ``passed`` or ``failed``.
    status: Mapped[str] = mapped_column(String(16))
    passed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    #: Per step: name, status, error, retries, duration_ms, request, response, assertions.
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """REST representation."""
        return {
            "id": self.id,
            "test_case_id": self.test_case_id,
            "job_id": self.job_id,
            "status": self.status,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "duration_ms": self.duration_ms,
            "steps": self.steps,
            "created_at": isoformat(self.created_at),
        }
