"""``/api/openapi.json``, ``/health``, ``/ready`` and ``/metrics``: what the API is, whether
the process lives, whether it can serve, and its numbers."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Response, current_app, request

from ..extensions import socketio
from . import bp
from .schema import openapi_document, spec


@bp.get("/openapi.json")
@spec(auth=False, responses={200: {"type": "object", "required": ["openapi", "paths"]}})
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document, generated from the routes."""
    return openapi_document(current_app)


def health() -> tuple[dict[str, Any], int]:
    """Liveness: 200 whenever the process answers, so a probe never restarts it for an
    outage elsewhere. The body still says what is degraded (``/ready`` acts on it).

    Also the async mode, open connections and worker id of this process.
    """
    from ..observability import dependency_status
    from ..realtime.connections import connection_counts

    database, message_queue = dependency_status()
    degraded = database["status"] == "degraded" or message_queue["status"] == "degraded"
    body = {
        "status": "degraded" if degraded else "ok",
        "database": database,
        "message_queue": message_queue,
        "async_mode": socketio.async_mode,
        "connections": connection_counts(),
        "worker_id": current_app.extensions["herald_runner"].worker_id,
    }
    return body, 200


def ready() -> tuple[dict[str, Any], int]:
    """Readiness: 200 when the database answers and the message queue (if configured) is
    usable, else 503 with the reasons, so a load balancer sends clients elsewhere."""
    from ..observability import dependency_status

    database, message_queue = dependency_status()
    reasons = {
        name: check.get("reason", "degraded")
        for name, check in (("database", database), ("message_queue", message_queue))
        if check["status"] == "degraded"
    }
    body: dict[str, Any] = {
        "status": "not_ready" if reasons else "ready",
        "database": database,
        "message_queue": message_queue,
    }
    if reasons:
        body["reasons"] = reasons
    return body, 503 if reasons else 200


def metrics() -> Response | tuple[dict[str, Any], int, dict[str, str]]:
    """This process's metrics in the Prometheus text format; ``METRICS_TOKEN``, when set,
    is required as a Bearer token. Parts that cannot be read are left out, never a 500."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    from ..metrics import add_deferred_counts

    expected = current_app.config.get("METRICS_TOKEN")
    if expected:
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), expected.encode()):
            body = {"error": {"code": "unauthorized", "message": "/metrics needs the METRICS_TOKEN bearer token"}}
            return body, 401, {"WWW-Authenticate": 'Bearer realm="metrics"'}
    add_deferred_counts()
    return Response(generate_latest(REGISTRY), mimetype=None, content_type=CONTENT_TYPE_LATEST)
