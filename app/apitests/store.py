"""Test cases and results in the database, always scoped to their owner."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..database import commit_session
from ..errors import NotFound
from ..extensions import db
from ..models import TestCase, TestCaseResult, utcnow
from .spec import check_case, dump_yaml, parse_case_yaml


def parse_submission(body: str | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A YAML text or a JSON object → (checked case, YAML source); raises ``CaseError``."""
    if isinstance(body, str):
        return parse_case_yaml(body), body
    case = check_case(body)
    return case, dump_yaml(case)


def create_case(owner_id: int, body: str | dict[str, Any]) -> TestCase:
    """Check and store a new case."""
    case, source = parse_submission(body)
    now = utcnow()
    row = TestCase(
        owner_id=owner_id,
        name=case["name"],
        description=case.get("description"),
        source=source,
        spec=case,
        created_at=now,
        updated_at=now,
    )
    db.session.add(row)
    commit_session()
    return row


def update_case(row: TestCase, body: str | dict[str, Any]) -> TestCase:
    """Replace a case's content (the id and its results stay)."""
    case, source = parse_submission(body)
    row.name = case["name"]
    row.description = case.get("description")
    row.source = source
    row.spec = case
    row.updated_at = utcnow()
    commit_session()
    return row


def delete_case(row: TestCase) -> None:
    """Delete a case and its results."""
    db.session.delete(row)
    commit_session()


def get_owned_case(user_id: int, case_id: int) -> TestCase:
    """The case if ``user_id`` owns it; otherwise ``NotFound`` (same as missing)."""
    row = db.session.get(TestCase, case_id)
    if row is None or row.owner_id != user_id:
        raise NotFound(f"test case {case_id} not found")
    return row


def list_cases(user_id: int, *, limit: int = 100, offset: int = 0) -> list[TestCase]:
    """A user's cases, newest first."""
    query = select(TestCase).where(TestCase.owner_id == user_id).order_by(TestCase.id.desc())
    return list(db.session.scalars(query.limit(limit).offset(offset)))


def save_result(case: TestCase, job_id: int | None, outcome: dict[str, Any]) -> TestCaseResult:
    """Store one run's outcome (from ``engine.run_case``)."""
    row = TestCaseResult(
        test_case_id=case.id,
        owner_id=case.owner_id,
        job_id=job_id,
        status=outcome["status"],
        passed=outcome["passed"],
        failed=outcome["failed"],
        skipped=outcome["skipped"],
        duration_ms=outcome["duration_ms"],
        steps=outcome["steps"],
        created_at=utcnow(),
    )
    db.session.add(row)
    commit_session()
    return row


def list_results(case: TestCase, *, limit: int = 50, offset: int = 0) -> list[TestCaseResult]:
    """A case's results, newest first."""
    query = select(TestCaseResult).where(TestCaseResult.test_case_id == case.id).order_by(TestCaseResult.id.desc())
    return list(db.session.scalars(query.limit(limit).offset(offset)))
