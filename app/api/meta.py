"""``/api/openapi.json`` and ``/health``: what the API is and whether it is up."""

from __future__ import annotations

from typing import Any

from flask import current_app

from ..extensions import socketio
from . import bp
from .schema import openapi_document, spec


@bp.get("/openapi.json")
@spec(auth=False)
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document, generated from the routes."""
    return openapi_document(current_app)


def health() -> tuple[dict[str, Any], int]:
    """Readiness: the database and the message queue, each on its own; 503 when one is degraded.

    Also the async mode, open connections and worker id of this process.
    """
    from ..database import check_database
    from ..realtime.connections import connection_counts

    database = check_database()
    message_queue = current_app.extensions["herald_queue_probe"].check()
    outage = getattr(socketio.server.manager, "outage", None)  # Redis answers, but this process's link is broken
    if outage and message_queue["status"] == "ok":
        message_queue = {**message_queue, "status": "degraded", "reason": outage}
    degraded = database["status"] == "degraded" or message_queue["status"] == "degraded"
    body = {
        "status": "degraded" if degraded else "ok",
        "database": database,
        "message_queue": message_queue,
        "async_mode": socketio.async_mode,
        "connections": connection_counts(),
        "worker_id": current_app.extensions["herald_runner"].worker_id,
    }
    return body, 503 if degraded else 200
