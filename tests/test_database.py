"""Database set-up that a fresh checkout relies on."""

from __future__ import annotations

from pathlib import Path

from app.database import ensure_sqlite_folder


def test_sqlite_folder_is_created_for_a_fresh_checkout(tmp_path: Path):
    target = tmp_path / "instance" / "nested" / "herald.db"
    ensure_sqlite_folder(f"sqlite:///{target}")
    assert target.parent.is_dir()


def test_other_databases_are_left_alone(tmp_path: Path):
    ensure_sqlite_folder("sqlite:///:memory:")
    ensure_sqlite_folder("postgresql://user@localhost/herald")
