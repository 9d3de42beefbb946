"""``/api/jobs/<id>/report``: where an external job's producer reports (its token only)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g

from ..auth.tokens import bearer_token, producer_claims
from ..jobs import producers
from . import bp
from .schema import spec

F = TypeVar("F", bound=Callable[..., Any])

REPORT_SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "description": "items {n, type, ...}, each checked on its own (errors name its index); "
            "n grows strictly per job; see docs/PROTOCOL.md",
        }
    },
    "additionalProperties": False,
}
REPORT_ANSWER = {
    "type": "object",
    "required": ["applied", "skipped", "last_n", "status"],
    "properties": {
        "applied": {"type": "integer"},
        "skipped": {"type": "integer", "description": "items whose n was applied before (a batch sent again)"},
        "last_n": {"type": "integer", "description": "the highest n applied to the job"},
        "status": {"type": "string"},
    },
}


def producer_required(view: F) -> F:
    """Require the producer token of the job in the path, before the body is read."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.producer_claims = producer_claims(bearer_token(), int(kwargs["job_id"]))
        return view(*args, **kwargs)

    return cast(F, wrapper)


@bp.post("/jobs/<id:job_id>/report")
@producer_required
@spec(body=REPORT_SCHEMA, responses={200: REPORT_ANSWER, 409: None}, auth="producer")
def report(job_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """Report a batch of items into an external job, with its producer token as Bearer.

    Items whose ``n`` is at or below the job's highest applied ``n`` are skipped, so a
    batch sent again changes nothing. ``400 validation_error`` names each bad item
    (``details: [{index, path, code, message}]``) and applies none; ``409 job_finished``
    (``details.status``) once the job has ended — cancelled by its user, for one;
    ``409 report_conflict`` when another report raced this one (send it again).
    """
    config = current_app.config
    items = producers.check_items(
        body["items"],
        max_items=int(config["PRODUCER_BATCH_MAX_ITEMS"]),
        max_chars=int(config["PRODUCER_MAX_LINE_CHARS"]),
    )
    return producers.apply_report(job_id, items).to_dict()
