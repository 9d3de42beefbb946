"""Revoked tokens (refused until they would have expired anyway) and the access tokens a
browser session minted (so that signing out revokes every one of them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow


class RevokedToken(db.Model):
    """One revoked JWT, by its ``jti``; rows past ``expires_at`` may be purged."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SessionToken(db.Model):
    """An access token minted from a browser session's refresh cookie; sign-out revokes it.

    Each tab of a browser gets its own access token from the one refresh cookie, so signing
    out in one tab must revoke the others' too: they are listed here by ``session_jti``
    (the refresh token's ``jti``). Rows past ``expires_at`` are deleted as the user's
    sessions refresh.
    """

    __tablename__ = "session_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_jti: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int] = mapped_column(index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
