"""Webhooks: URLs a user registered for job events, and every delivery to them.

Deliveries are rows, derived from the durable job event stream (``job_events``) by the
dispatcher (``app/webhooks/dispatcher.py``), so none is lost to a restart: a row is
``pending`` until a 2xx answer (``delivered``) or until retries run out (``failed``).
Finished rows are deleted ``WEBHOOK_DELIVERY_RETENTION_DAYS`` after their last attempt;
a webhook's rows go with it (``ON DELETE CASCADE``), pending ones included.
``WebhookCursor`` is how far the dispatchers have read the event stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, isoformat, utcnow

#: A delivery's states: waiting for (another) attempt, answered 2xx, given up.
DELIVERY_STATUSES = ("pending", "delivered", "failed")


class Webhook(db.Model):
    """One URL a user wants job events POSTed to, signed with the user's secret."""

    __tablename__ = "webhooks"
    #: Ids are never handed out again, also on SQLite (see ``WebhookDelivery``).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    #: Event names (``job.completed``, ``job.failed``, ``job.cancelled``, ``job.status``) or ``*``.
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The HMAC key. Kept as given (signing needs it); REST only ever shows its last characters.
    secret: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """The webhook as its owner reads it: never the secret, only a hint of it."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events or []),
            "secret_hint": "…" + self.secret[-4:],
            "created_at": isoformat(self.created_at),
        }


class WebhookDelivery(db.Model):
    """One event for one webhook: its body (the same bytes every attempt) and its fate."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "job_event_id", "event", name="uq_webhook_deliveries_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
        # Finished deliveries by age, for the retention trim (``WEBHOOK_DELIVERY_RETENTION_DAYS``).
        Index("ix_webhook_deliveries_finished", "status", "last_attempt_at"),
        # The id is the ``Herald-Delivery`` header receivers deduplicate on: never reused.
        # SQLite hands out max(id) + 1 without AUTOINCREMENT, so once a webhook's deletion
        # or the retention trim removed the newest rows, a new delivery got an old id.
        # (PostgreSQL's sequences never go back.) A migration that rebuilds this table on
        # SQLite must keep it: ``batch_alter_table(..., table_kwargs={"sqlite_autoincrement": True})``.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int] = mapped_column(Integer)
    #: The ``job_events`` row it comes from (one delivery per webhook, event and name).
    job_event_id: Mapped[int] = mapped_column(BigInteger)
    #: The JSON body, exactly as sent (and signed) on every attempt.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: When the next attempt is due (None once delivered or failed). While an attempt is
    #: in flight it is when that attempt is retried should its process die.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        """One line of ``GET /api/webhooks/<id>/deliveries``."""
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "event": self.event,
            "job_id": self.job_id,
            "status": self.status,
            "attempts": self.attempts,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "next_attempt_at": isoformat(self.next_attempt_at),
            "last_attempt_at": isoformat(self.last_attempt_at),
            "created_at": isoformat(self.created_at),
        }


class WebhookCursor(db.Model):
    """How far the webhook dispatchers have turned ``job_events`` into deliveries (one row)."""

    __tablename__ = "webhook_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: Every event up to this id has been looked at (later ones may have been too).
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
