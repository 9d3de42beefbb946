"""``/api/webhooks``: URLs a user registers for job events, and their deliveries (owner only)."""

from __future__ import annotations

from typing import Any

from ..auth.tokens import current_user
from ..models import DELIVERY_STATUSES
from ..webhooks import store
from . import bp
from .schema import OFFSET, integer, spec

WEBHOOK_BODY = {
    "type": "object",
    "required": ["url", "events"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 2048, "description": "http(s) URL to POST events to"},
        "events": {
            "type": "array",
            "minItems": 1,
            "maxItems": len(store.EVENTS),
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(store.EVENTS)},
            "description": "job.completed, job.failed, job.cancelled, * (every job end), job.status (every status)",
        },
        "secret": {
            "type": "string",
            "minLength": 16,
            "maxLength": 256,
            "description": "HMAC-SHA256 key for Herald-Signature; generated (and returned once) when absent",
        },
    },
}
WEBHOOK = {
    "type": "object",
    "required": ["id", "url", "events", "secret_hint", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "secret_hint": {"type": "string", "description": "the secret's last four characters"},
        "created_at": {"type": "string"},
    },
}
WEBHOOK_RESPONSE = {"type": "object", "required": ["webhook"], "properties": {"webhook": WEBHOOK}}
CREATED_RESPONSE = {
    "type": "object",
    "required": ["webhook", "secret"],
    "properties": {"webhook": WEBHOOK, "secret": {"type": "string", "description": "shown this once"}},
}
WEBHOOKS_RESPONSE = {
    "type": "object",
    "required": ["webhooks"],
    "properties": {"webhooks": {"type": "array", "items": WEBHOOK}},
}
DELIVERY = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "webhook_id": {"type": "integer"},
        "event": {"type": "string"},
        "job_id": {"type": "integer"},
        "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
        "attempts": {"type": "integer"},
        "last_status_code": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"]},
        "next_attempt_at": {"type": ["string", "null"]},
        "last_attempt_at": {"type": ["string", "null"]},
        "created_at": {"type": "string"},
    },
}
DELIVERIES_RESPONSE = {
    "type": "object",
    "required": ["webhook_id", "deliveries"],
    "properties": {"webhook_id": {"type": "integer"}, "deliveries": {"type": "array", "items": DELIVERY}},
}


@bp.post("/webhooks")
@spec(body=WEBHOOK_BODY, responses={201: CREATED_RESPONSE, 409: None})
def create_webhook(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Register a URL for job events; deliveries are signed with ``secret`` (returned once).

    The host must be allowed by ``WEBHOOK_ALLOWED_HOSTS``: 400 ``host_not_allowed`` (a
    private or loopback address not listed as written, or a host no entry admits),
    ``unsupported_scheme`` or ``invalid_url`` otherwise.
    """
    webhook, secret = store.create_webhook(current_user().id, body["url"], body["events"], body.get("secret"))
    return {"webhook": webhook.to_dict(), "secret": secret}, 201


@bp.get("/webhooks")
@spec(query={"limit": integer(100, minimum=1, maximum=1000), "offset": OFFSET}, responses={200: WEBHOOKS_RESPONSE})
def list_webhooks(limit: int, offset: int) -> dict[str, Any]:
    """Your webhooks, oldest first (secrets shown only as a hint)."""
    rows = store.list_webhooks(current_user().id, limit=limit, offset=offset)
    return {"webhooks": [row.to_dict() for row in rows]}


@bp.get("/webhooks/<id:webhook_id>")
@spec(responses={200: WEBHOOK_RESPONSE})
def get_webhook(webhook_id: int) -> dict[str, Any]:
    """One of your webhooks (its secret only as a hint)."""
    return {"webhook": store.get_owned_webhook(current_user().id, webhook_id).to_dict()}


@bp.delete("/webhooks/<id:webhook_id>")
@spec(responses={204: None})
def delete_webhook(webhook_id: int) -> tuple[str, int]:
    """Delete a webhook with its deliveries; pending ones are never sent."""
    store.delete_webhook(store.get_owned_webhook(current_user().id, webhook_id))
    return "", 204


@bp.get("/webhooks/<id:webhook_id>/deliveries")
@spec(
    query={
        "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
        "limit": integer(50, minimum=1, maximum=500),
        "offset": OFFSET,
    },
    responses={200: DELIVERIES_RESPONSE},
)
def list_webhook_deliveries(webhook_id: int, status: str | None, limit: int, offset: int) -> dict[str, Any]:
    """A webhook's deliveries, newest first: event, job, status, attempts, last answer, next attempt."""
    webhook = store.get_owned_webhook(current_user().id, webhook_id)
    return {
        "webhook_id": webhook.id,
        "deliveries": store.list_deliveries(webhook, status=status, limit=limit, offset=offset),
    }
