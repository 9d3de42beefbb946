"""Database set-up that a fresh checkout relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.database import ensure_sqlite_folder
from app.models import isoformat


def test_sqlite_folder_is_created_for_a_fresh_checkout(tmp_path: Path):
    target = tmp_path / "instance" / "nested" / "herald.db"
    ensure_sqlite_folder(f"sqlite:///{target}")
    assert target.parent.is_dir()


def test_other_databases_are_left_alone(tmp_path: Path):
    ensure_sqlite_folder("sqlite:///:memory:")
    ensure_sqlite_folder("postgresql://user@localhost/herald")


@pytest.mark.parametrize(
    ("moment", "wire"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "2026-01-02T03:04:05.678Z"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        (datetime(2026, 1, 2, 5, 4, 5, 999999, tzinfo=timezone(timedelta(hours=2))), "2026-01-02T03:04:05.999Z"),
    ],
)
def test_the_wire_timestamp_is_utc_with_milliseconds_and_z(moment, wire):
    assert isoformat(moment) == wire
    assert isoformat(None) is None
