"""Request validation and the OpenAPI document, both from one statement per view.

``@spec`` attaches request/response schemas to a view; ``json_body()`` validates the JSON
body against that same schema (so the document and the check cannot disagree);
``openapi_document`` walks the URL map and the attached specs. ``HeraldRequest`` bounds
every JSON body (size, depth, 64-bit integers) before any view sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request
from flask import Request as FlaskRequest
from flask.json.provider import DefaultJSONProvider
from jsonschema import Draft202012Validator
from werkzeug.exceptions import BadRequest as HTTPBadRequest
from werkzeug.routing import BaseConverter

from ..errors import BadRequest, PayloadTooLarge, ValidationFailed
from ..inputs import INT64_MAX, load_json

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


class HeraldJSONProvider(DefaultJSONProvider):
    """Flask's JSON with bounded parsing: no NaN, 64-bit integers, limited depth and size."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return load_json(s)


class HeraldRequest(FlaskRequest):
    """A request whose JSON body is bounded in bytes and whose parse errors say why."""

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        limit = int(current_app.config["MAX_JSON_BODY_BYTES"])
        if (self.content_length or 0) > limit:
            if silent:
                return None
            raise PayloadTooLarge(f"a JSON body is at most {limit} bytes", code="body_too_large")
        return super().get_json(force=force, silent=silent, cache=cache)

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise BadRequest("send a JSON body with Content-Type: application/json", code="invalid_json")
        raise BadRequest(f"the body is not valid JSON: {e}", code="invalid_json")


class IdOutOfRange(HTTPBadRequest):
    """A path id that is all digits but outside ``1..INT64_MAX`` (400, not a 500 from the driver)."""

    herald_code = "invalid_id"


class IdConverter(BaseConverter):
    """``<id:name>``: a database id, ``1..INT64_MAX``; other digits are a clear 400."""

    regex = r"\d+"

    def to_python(self, value: str) -> int:
        number = int(value) if len(value) <= 20 else INT64_MAX + 1
        if not 1 <= number <= INT64_MAX:
            raise IdOutOfRange(f"ids are between 1 and {INT64_MAX}")
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": INT64_MAX}


def json_body() -> dict[str, Any]:
    """The request's JSON body, validated against the ``@spec(body=…)`` of the current view."""
    view = current_app.view_functions[request.endpoint or ""]
    schema = view.__herald_spec__["body"]  # type: ignore[attr-defined]
    data = request.get_json()
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        details = [{"path": ".".join(str(p) for p in e.path) or "(body)", "message": e.message} for e in errors]
        raise ValidationFailed(f"{details[0]['path']}: {details[0]['message']}", details=details)
    return data  # type: ignore[no-any-return]


def query_int(name: str, default: int, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """An integer query parameter within ``minimum..maximum``, or a clear 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
        raise ValidationFailed(f"query parameter {name!r} must be an integer", details={"path": name})
    value = int(text)
    if not minimum <= value <= maximum:
        message = f"query parameter {name!r} must be between {minimum} and {maximum}"
        raise ValidationFailed(message, details={"path": name})
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
            {"name": name, "in": "path", "required": True, "schema": ID_SCHEMA if conv == "id" else {"type": "string"}}
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
