"""Webhooks as their owner manages them over REST: create, list, read, delete, deliveries.

Every read is scoped by owner: another user's webhook is ``NotFound``, like a missing one.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from ..database import commit_session
from ..errors import BadRequest, Conflict, NotFound
from ..extensions import db
from ..models import Webhook, WebhookDelivery, utcnow
from .targets import HostRefused, check_target, normalise_hosts

#: Event names a webhook may ask for; ``*`` is every job end (the first three).
JOB_END_EVENTS = ("job.completed", "job.failed", "job.cancelled")
EVENTS = (*JOB_END_EVENTS, "job.status", "*")
#: Webhooks one user may have.
MAX_WEBHOOKS_PER_USER = 50


def allowed_hosts() -> frozenset[str]:
    """``WEBHOOK_ALLOWED_HOSTS`` as a set ready for lookups."""
    return normalise_hosts(current_app.config["WEBHOOK_ALLOWED_HOSTS"])


def create_webhook(owner_id: int, url: str, events: list[str], secret: str | None) -> tuple[Webhook, str]:
    """Store a webhook; returns it and its secret (generated when none was given)."""
    try:
        check_target(url, allowed_hosts())
    except HostRefused as exc:
        raise BadRequest(exc.message, code=exc.code, details={"path": "url"}) from None
    count = db.session.scalar(select(func.count()).select_from(Webhook).where(Webhook.owner_id == owner_id)) or 0
    if count >= MAX_WEBHOOKS_PER_USER:
        raise Conflict(f"a user has at most {MAX_WEBHOOKS_PER_USER} webhooks", code="too_many_webhooks")
    secret = secret or secrets.token_urlsafe(32)
    webhook = Webhook(owner_id=owner_id, url=url, events=sorted(set(events)), secret=secret, created_at=utcnow())
    db.session.add(webhook)
    commit_session()
    return webhook, secret


def list_webhooks(owner_id: int, *, limit: int, offset: int) -> list[Webhook]:
    """The user's webhooks, oldest first."""
    query = select(Webhook).where(Webhook.owner_id == owner_id).order_by(Webhook.id).limit(limit).offset(offset)
    return list(db.session.scalars(query))


def get_owned_webhook(owner_id: int, webhook_id: int) -> Webhook:
    """The user's webhook, or ``NotFound`` (also for someone else's)."""
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None or webhook.owner_id != owner_id:
        raise NotFound(f"webhook {webhook_id} not found")
    return webhook


def delete_webhook(webhook: Webhook) -> None:
    """Delete a webhook; its deliveries go with it (pending ones are never sent)."""
    db.session.delete(webhook)
    commit_session()


def list_deliveries(webhook: Webhook, *, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """A webhook's deliveries, newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    rows = db.session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit).offset(offset))
    return [row.to_dict() for row in rows]
