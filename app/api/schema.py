"""Request validation and the OpenAPI document, both from one statement per view.

``@spec`` is the one place a view states its body, query parameters, auth and answers:
its wrapper checks the token, parses and checks the query and body against those schemas
and hands the values to the view, and ``openapi_document`` renders the same declarations
(plus the 400/401/404/413 they imply), so the document and the checks cannot disagree.
``HeraldRequest`` bounds every JSON body (size, depth, 64-bit integers) before any view
sees it.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, request
from flask import Request as FlaskRequest
from flask.json.provider import DefaultJSONProvider
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from werkzeug.exceptions import BadRequest as HTTPBadRequest
from werkzeug.routing import BaseConverter

from ..errors import BadRequest, PayloadTooLarge, ValidationFailed
from ..inputs import INT64_MAX, INT64_MIN, SchemaValidator, load_json

F = TypeVar("F", bound=Callable[..., Any])
Schema = dict[str, Any]

#: The REST error body every 4xx carries (``app.api.errors``).
ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}
#: What an error status means here, and the codes it comes with (the document's words).
ERROR_MEANINGS = {
    400: "malformed or invalid input: `invalid_json`, `validation_error`, `invalid_id`, or a resource's own code",
    401: "no valid credentials: `token_missing`, `token_invalid`, `token_expired`, `token_revoked`",
    404: "`not_found`: unknown, or not yours (the two look the same)",
    409: "the request clashes with the resource's current state",
    411: "`length_required`: the body needs a Content-Length",
    413: "over a size limit: `body_too_large`, `payload_too_large`, `upload_too_large`",
    429: "too many attempts; `details.retry_after` says when to try again",
}
ID_SCHEMA: Schema = {"type": "integer", "minimum": 1, "maximum": INT64_MAX}


def integer(default: int, *, minimum: int = 0, maximum: int = INT64_MAX) -> Schema:
    """An integer query parameter's schema: its bounds and default are enforced as stated."""
    return {"type": "integer", "minimum": minimum, "maximum": maximum, "default": default}


#: The paging parameters most lists take.
OFFSET = integer(0)


def read_json(schema: Schema) -> Any:
    """The JSON body, validated against ``schema`` (a 400 ``validation_error`` naming each path)."""
    data = request.get_json()
    _validate(schema, data)
    return data


def read_optional_json(schema: Schema) -> Any:
    """An optional JSON body: an empty one reads as ``{}``; one that is sent must parse
    and fit ``schema`` like any other."""
    if not request.content_length:
        return {}
    return read_json(schema)


_validators: dict[int, tuple[Schema, Validator]] = {}


def _validator(schema: Schema) -> Validator:
    """One validator per declared schema, built once (kept with its schema, so an id is
    never reused for another)."""
    hit = _validators.get(id(schema))
    if hit is None or hit[0] is not schema:
        hit = _validators[id(schema)] = (schema, SchemaValidator(schema))
    return hit[1]


def _validate(schema: Schema, data: Any) -> None:
    errors = sorted(_validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        details = [{"path": ".".join(str(p) for p in e.path) or "(body)", "message": e.message} for e in errors]
        raise ValidationFailed(f"{details[0]['path']}: {details[0]['message']}", details=details)


@dataclass(frozen=True)
class Body:
    """A request body: its schema and media types (for the document) and how it is read.

    ``read(schema)`` runs before the view and its result is the view's ``body`` argument;
    ``None`` means the view streams the body itself (uploads). ``alternatives`` are other
    media types with their own schema (a test case as YAML text).
    """

    schema: Schema
    media_types: tuple[str, ...] = ("application/json",)
    read: Callable[[Schema], Any] | None = read_json
    required: bool = True
    alternatives: dict[str, Schema] = field(default_factory=dict)

    def content(self) -> dict[str, Any]:
        """The document's ``requestBody.content``."""
        media = {name: self.schema for name in self.media_types} | self.alternatives
        return {name: {"schema": schema} for name, schema in media.items()}


@dataclass(frozen=True)
class Operation:
    """Everything a view states about its requests and answers, once."""

    body: Body | None
    query: dict[str, Schema]
    responses: dict[int, Any]
    auth: bool | str


def files(*media_types: str) -> dict[str, Schema]:
    """A response that is a file of one of ``media_types`` (not JSON)."""
    return {media_type: {} for media_type in media_types}


def spec(
    *,
    body: Body | Schema | None = None,
    query: dict[str, Schema] | None = None,
    responses: dict[int, Any] | None = None,
    auth: bool | str = True,
) -> Callable[[F], F]:
    """State a view's input and answers once: the OpenAPI document and the checks come from here.

    Before the view runs: the access token is checked (``auth=True``; ``"refresh"``,
    ``"cookie"`` and ``"producer"`` only document a view that reads its token itself: a
    refresh token from the Authorization header or the browser's session cookie, an external
    job's producer token), each ``query`` parameter is parsed
    and checked against its schema and passed as a keyword argument (its ``default`` when
    absent), and the body is read and checked (the ``body`` argument). ``responses`` maps a
    status to a JSON schema (``None``: no content for 2xx, the error body for 4xx) or to
    ``files(...)``; the 4xx answers the declaration implies (400, 401, 404, 413) are added.
    """
    declared_body = Body(body) if isinstance(body, dict) else body
    operation = Operation(declared_body, dict(query or {}), dict(responses or {200: None}), auth)

    def attach(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            for name, schema in operation.query.items():
                kwargs[name] = _query_value(name, schema)
            if operation.body is not None and operation.body.read is not None:
                kwargs["body"] = operation.body.read(operation.body.schema)
            return view(*args, **kwargs)

        wrapper: Callable[..., Any] = checked
        if auth is True:
            from ..auth.tokens import login_required  # the auth blueprint imports this module

            wrapper = login_required(checked)
        wrapper.__herald_operation__ = operation  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return attach


def _query_value(name: str, schema: Schema) -> Any:
    """One query parameter, parsed by its schema's type and checked against the schema."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return schema.get("default")
    value: Any = raw
    if schema.get("type") == "integer":
        text = raw.strip()
        if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
            raise ValidationFailed(f"query parameter {name!r} must be an integer", details={"path": name})
        value = int(text)
        low, high = schema.get("minimum", INT64_MIN), schema.get("maximum", INT64_MAX)
        if not low <= value <= high:
            message = f"query parameter {name!r} must be between {low} and {high}"
            raise ValidationFailed(message, details={"path": name})
    error = best_match(_validator(schema).iter_errors(value))
    if error is not None:
        raise ValidationFailed(f"query parameter {name!r}: {error.message}", details={"path": name})
    return value


class HeraldJSONProvider(DefaultJSONProvider):
    """Flask's JSON with bounded parsing (no NaN, 64-bit integers, limited depth and size)
    and valid output: a NaN or infinity that reached a stored value anyway (a tested API's
    response, an old row) is written ``null``, as on the sockets, never the bare ``NaN``
    or ``Infinity`` that a browser's ``JSON.parse`` refuses."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return load_json(s)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return super().dumps(obj, allow_nan=False, **kwargs)
        except ValueError as exc:
            if "Out of range float" not in str(exc):  # e.g. a circular reference
                raise
        convert = kwargs.pop("default", self.default)
        return super().dumps(_finite(obj), default=lambda value: _finite(convert(value)), **kwargs)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity inside it replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


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


class InvalidPathId(HTTPBadRequest):
    """A path id that is not a whole number in ``1..INT64_MAX`` (400, not a 404 that hides
    the typo, nor a 500 from the driver)."""

    herald_code = "invalid_id"


class IdConverter(BaseConverter):
    """``<id:name>``: a database id, ``1..INT64_MAX``; any other path segment is a clear 400."""

    # (No ``regex``: BaseConverter's, one path segment, is the one wanted, and a regex of
    # its own containing "/" would make werkzeug match the rule's whole rest of the path.)

    def to_python(self, value: str) -> int:
        if not (value.isascii() and value.isdigit()):  # -1, 1.5, abc, full-width digits
            raise InvalidPathId(f"an id is a whole number between 1 and {INT64_MAX}, not {value[:40]!r}")
        number = int(value) if len(value) <= 20 else INT64_MAX + 1
        if not 1 <= number <= INT64_MAX:
            raise InvalidPathId(f"ids are between 1 and {INT64_MAX}")
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


_PATH_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def _responses(operation: Operation, path_params: list[str]) -> dict[int, Any]:
    """The declared answers plus the 4xx the declaration implies."""
    implied: dict[int, Any] = {}
    if operation.body is not None or operation.query or path_params:
        implied[400] = None
    if operation.auth:
        implied[401] = None
    if path_params:
        implied[404] = None
    if operation.body is not None and operation.body.read is not None:
        implied[413] = None
    return dict(sorted({**implied, **operation.responses}.items()))


def _response(code: int, content: Any) -> dict[str, Any]:
    if code >= 400:
        return {
            "description": ERROR_MEANINGS.get(code, "error"),
            "content": {"application/json": {"schema": content or ERROR_SCHEMA}},
        }
    if content is None:
        return {"description": "no content"}
    if all("/" in key for key in content):  # files(...)
        return {"description": "the file", "content": {key: {"schema": {}} for key in content}}
    return {"description": "ok", "content": {"application/json": {"schema": content}}}


#: What a view without ``@spec`` is documented as.
_UNDECLARED = Operation(None, {}, {200: None}, True)


def openapi_document(app: Flask) -> dict[str, Any]:
    """OpenAPI 3.1 for every ``/api`` REST route, from docstrings and ``@spec`` declarations.

    WebSocket endpoints (``ws`` blueprint) are left out: OpenAPI cannot describe them, and
    docs/PROTOCOL.md does.
    """
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api") or rule.endpoint == "static" or rule.endpoint.startswith("ws."):
            continue
        view = app.view_functions[rule.endpoint]
        operation: Operation = getattr(view, "__herald_operation__", _UNDECLARED)
        path = _PATH_PARAM.sub(r"{\2}", rule.rule)
        path_params = _PATH_PARAM.findall(rule.rule)
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": ID_SCHEMA if conv == "id" else {"type": "string", "minLength": 1},
            }
            for conv, name in path_params
        ]
        # An empty value means the default (``?status=&kind=`` from a form).
        params += [
            {"name": n, "in": "query", "required": False, "allowEmptyValue": True, "schema": s}
            for n, s in operation.query.items()
        ]
        doc = inspect.cleandoc(view.__doc__ or "")
        responses = _responses(operation, [name for _, name in path_params])
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            entry: dict[str, Any] = {
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "summary": doc.split("\n")[0] if doc else rule.endpoint,
                "tags": [rule.endpoint.split(".")[0]],
                "parameters": params,
                "responses": {str(code): _response(code, content) for code, content in responses.items()},
            }
            if doc:
                entry["description"] = doc
            if operation.body is not None:
                entry["requestBody"] = {
                    "required": operation.body.required,
                    "content": operation.body.content(),
                }
            if operation.auth == "cookie":
                entry["security"] = [{"session_cookie": []}]
            elif operation.auth == "producer":
                entry["security"] = [{"producer_token": []}]
            elif operation.auth:
                entry["security"] = [{"bearer": []}]
            paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald",
            "version": "1.0.0",
            "description": "Long jobs with live progress. See docs/PROTOCOL.md for sockets.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session_cookie": {"type": "apiKey", "in": "cookie", "name": "herald_refresh"},
                "producer_token": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "an external job's producer token (POST /api/jobs, kind external)",
                },
            }
        },
    }
