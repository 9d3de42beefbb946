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


def health() -> dict[str, Any]:
    """Liveness: status, async mode and open connections of this process."""
    from ..realtime.connections import connection_counts

    return {
        "status": "ok",
        "async_mode": socketio.async_mode,
        "connections": connection_counts(),
        "worker_id": current_app.extensions["herald_runner"].worker_id,
    }
