"""Herald's one exception hierarchy, rendered the same way by every protocol.

``HeraldError`` (base; ``code``, ``message``, ``status``, ``details``)
  ├─ ``BadRequest`` 400 — malformed input, ``code="bad_request"``
  │    └─ ``ValidationFailed`` 400 — input of the wrong shape, ``code="validation_error"``
  ├─ ``Unauthorized`` 401 — missing or bad credentials
  ├─ ``Forbidden`` 403 — refused whoever asks (a browser-session call from a foreign origin)
  ├─ ``NotFound`` 404 — unknown, or not yours (the two look the same on purpose)
  ├─ ``Conflict`` 409 — the request clashes with current state
  └─ ``PayloadTooLarge`` 413 — over a configured size limit

REST renders ``{"error": {"code", "message", "details"}}`` with ``status``; sockets render
``{"type": "error", "code", "message"}``; browser pages get an HTML page
(:func:`register_page_errors`: ``templates/errors/404.html`` and ``500.html``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

#: Paths whose errors stay JSON: the REST API and the probes (everything else is a page).
JSON_PREFIXES = ("/api/", "/health", "/ready", "/metrics")


class HeraldError(Exception):
    """Base of every error a client is meant to see."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The REST error body's inner object."""
        return {"code": self.code, "message": self.message, "details": self.details}


class BadRequest(HeraldError):
    """Input that cannot be understood."""

    status = 400
    code = "bad_request"


class ValidationFailed(BadRequest):
    """Input that was understood but has the wrong shape or values."""

    code = "validation_error"


class Unauthorized(HeraldError):
    """Missing, expired or invalid credentials."""

    status = 401
    code = "unauthorized"


class Forbidden(HeraldError):
    """A request refused for where it came from, not for who sent it."""

    status = 403
    code = "forbidden"


class NotFound(HeraldError):
    """Unknown resource, or one that belongs to someone else."""

    status = 404
    code = "not_found"


class Conflict(HeraldError):
    """The request clashes with the resource's current state."""

    status = 409
    code = "conflict"


class PayloadTooLarge(HeraldError):
    """A body or message over its configured limit."""

    status = 413
    code = "payload_too_large"


class TooMany(HeraldError):
    """A per-user or per-connection limit reached (connections, subscriptions, rate)."""

    status = 429
    code = "too_many_requests"


def wants_json(path: str) -> bool:
    """Whether an error on ``path`` is answered as JSON (API, probes) rather than a page."""
    return path == "/api" or path.startswith(JSON_PREFIXES)


def register_page_errors(app: Flask) -> None:
    """Styled HTML error pages for browser routes (404, 500, and any other client error
    with its reason, e.g. ``/jobs/abc``); ``/api`` keeps its JSON errors.

    Call after the REST handlers are registered (``app.api.errors``): they stay in charge
    of every JSON path, these only take over the pages.
    """
    from flask import render_template, request
    from werkzeug.exceptions import HTTPException

    handlers = app.error_handler_spec[None][None]
    json_http, json_unexpected = handlers[HTTPException], handlers[Exception]

    def page(template: str, status: int) -> tuple[str, int]:
        return render_template(template, path=request.path, status=status), status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if wants_json(request.path):
            return json_http(exc)
        if exc.code == 404:
            return page("errors/404.html", 404)
        if exc.code is not None and exc.code >= 500:
            return page("errors/500.html", exc.code)
        if exc.code is not None and exc.code >= 400 and exc.response is None:
            html = render_template(
                "errors/4xx.html", path=request.path, status=exc.code, name=exc.name, description=exc.description
            )
            return html, exc.code, exc.get_headers()
        return exc

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        if isinstance(exc, HTTPException) or wants_json(request.path):
            return json_unexpected(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return page("errors/500.html", 500)
