"""Users: who owns jobs and uploads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from ..concurrency import run_in_os_thread
from ..extensions import db
from .base import UTCDateTime, isoformat, utcnow


class User(db.Model):
    """A person or program that logs in; passwords are stored hashed."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def set_password(self, password: str) -> None:
        """Hash and store ``password`` (in an OS thread: see ``check_password``)."""
        self.password_hash = run_in_os_thread(lambda: generate_password_hash(password))

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches the stored hash.

        The hash is slow on purpose (PBKDF2, ~0.3 s of CPU): computed on the event loop it
        froze every socket of the process for that long at each login, so it runs in an OS
        thread (hashlib lets go of the GIL meanwhile)."""
        stored = self.password_hash
        return run_in_os_thread(lambda: check_password_hash(stored, password))

    def to_dict(self) -> dict[str, Any]:
        """Public view: never the hash."""
        return {
            "id": self.id,
            "username": self.username,
            "is_admin": self.is_admin,
            "created_at": isoformat(self.created_at),
        }
