"""Request validation and the OpenAPI document, both generated from the view code.

``@spec`` attaches request/response schemas to a view; ``body_of`` validates the JSON body
against the same schema; ``openapi_document`` walks the URL map and the attached specs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, request
from jsonschema import Draft202012Validator

from ..errors import BadRequest, ValidationFailed

F = TypeVar("F", bound=Callable[..., Any])

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}


def spec(
    *,
    body: dict[str, Any] | None = None,
    query: dict[str, dict[str, Any]] | None = None,
    responses: dict[int, dict[str, Any] | None] | None = None,
    auth: bool | str = True,
    content_type: str = "application/json",
) -> Callable[[F], F]:
    """Describe a view for the OpenAPI document (no runtime effect)."""

    def attach(view: F) -> F:
        view.__herald_spec__ = {  # type: ignore[attr-defined]
            "body": body,
            "query": query or {},
            "responses": responses or {200: None},
            "auth": auth,
            "content_type": content_type,
        }
        return view

    return attach


def body_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON body, validated against ``schema``."""
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("the request body must be a JSON object (Content-Type: application/json)", code="invalid_json")
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        details = [{"path": ".".join(str(p) for p in e.path) or "(body)", "message": e.message} for e in errors]
        raise ValidationFailed(f"{details[0]['path']}: {details[0]['message']}", details=details)
    return data


def query_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer query parameter with bounds, or a clear 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"query parameter {name!r} must be an integer", details={"path": name}) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationFailed(f"query parameter {name!r} must be {bound}", details={"path": name})
    return value


_PATH_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def openapi_document(app: Flask) -> dict[str, Any]:
    """OpenAPI 3.1 for every ``/api`` route, from docstrings and ``@spec`` data."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api") or rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        info = getattr(view, "__herald_spec__", None) or {
            "body": None,
            "query": {},
            "responses": {200: None},
            "auth": True,
            "content_type": "application/json",
        }
        path = _PATH_PARAM.sub(r"{\2}", rule.rule)
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "integer" if conv == "int" else "string"}}
            for conv, name in _PATH_PARAM.findall(rule.rule)
        ]
        params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in info["query"].items()]
        doc = (view.__doc__ or "").strip()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation: dict[str, Any] = {
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "summary": doc.split("\n")[0] if doc else rule.endpoint,
                "tags": [rule.endpoint.split(".")[0]],
                "parameters": params,
                "responses": {
                    str(code): {
                        "description": "error" if code >= 400 else "ok",
                        "content": {
                            "application/json": {
                                "schema": schema or (ERROR_SCHEMA if code >= 400 else {"type": "object"})
                            }
                        },
                    }
                    for code, schema in info["responses"].items()
                },
            }
            if info["body"] is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {info["content_type"]: {"schema": info["body"]}},
                }
            if info["auth"]:
                operation["security"] = [{"bearer": []}]
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald",
            "version": "1.0.0",
            "description": "Long jobs with live progress. See docs/PROTOCOL.md for sockets.",
        },
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
