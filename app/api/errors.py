"""One JSON error shape for REST: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from ..errors import HeraldError

log = logging.getLogger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The REST error body."""
    return {"error": {"code": code, "message": message, "details": details}}


def register_error_handlers(app: Flask) -> None:
    """Render Herald and HTTP errors as JSON under ``/api`` (pages keep HTML)."""

    @app.errorhandler(HeraldError)
    def herald_error(exc: HeraldError) -> tuple[dict[str, Any], int]:
        return {"error": exc.to_dict()}, exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if not request.path.startswith("/api") and request.path not in ("/health", "/ready", "/metrics"):
            return exc
        code = getattr(exc, "herald_code", None) or (exc.name or "error").lower().replace(" ", "_")
        return error_body(code, exc.description or exc.name or "error"), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return http_error(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_body("internal_error", "an unexpected error occurred; it has been logged"), 500
