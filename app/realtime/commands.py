"""Every message a socket client may send, declared once as a JSON Schema.

The handlers check each inbound message against its schema here before acting (a
mismatch is an ``error`` ``invalid_payload`` naming the field), docs/PROTOCOL.md describes
the same shapes, and the fuzz tests generate their messages from these very schemas, so
the check, the document and the tests cannot drift apart.

* :data:`SOCKETIO_EVENTS` — Socket.IO event name → schema of its payload.
* :data:`PLAIN_COMMANDS` — plain-WebSocket dialect name → ``type`` → schema of the frame.

Ids are integers or their digits as text (seed clients send them so); whether an id is in
``1..2^63-1`` is settled by :func:`app.inputs.parse_id` when the handler reads it.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any

from ..errors import ValidationFailed
from ..inputs import INT64_MAX, SchemaValidator, is_integer

Schema = dict[str, Any]

#: A job (or batch, test, execution) id.
ID: Schema = {
    "description": "an integer from 1 to 2^63-1, or its digits as a string",
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
        {"type": "string", "pattern": "^[0-9]{1,19}$"},
    ],
}
#: A resume position: the last durable seq the client holds (0 replays everything).
SEQ: Schema = {
    "description": "an integer from 0 to 2^63-1, or null",
    "anyOf": [{"type": "integer", "minimum": 0, "maximum": INT64_MAX}, {"type": "null"}],
}
#: Any payload at all (``ping``, ``echo``).
ANY: Schema = {}


def _object(description: str, required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    return {"description": description, "type": "object", "required": list(required), "properties": properties}


#: One job, optionally resumed (plain ``subscribe``; Socket.IO's also takes ``all``).
JOB: Schema = _object("an object {job_id, last_seq?}", ("job_id",), job_id=ID, last_seq=SEQ)
#: ``subscribe``: one job (optionally resumed), or ``{"all": true}``.
SUBSCRIBE: Schema = {
    **_object("an object {job_id, last_seq?} or {all: true}", all={"type": "boolean"}, job_id=ID, last_seq=SEQ),
    "if": {"required": ["all"], "properties": {"all": {"const": True}}},
    "else": {"required": ["job_id"]},
}
#: ``unsubscribe``: one job, or ``{"all": true}``.
UNSUBSCRIBE: Schema = {
    **_object("an object {job_id} or {all: true}", all={"type": "boolean"}, job_id=ID),
    "if": {"required": ["all"], "properties": {"all": {"const": True}}},
    "else": {"required": ["job_id"]},
}
#: Seed 000: ``subscribe_batch`` / ``unsubscribe_batch``.
BATCH: Schema = _object("an object {batch_execution_id}", ("batch_execution_id",), batch_execution_id=ID)
#: Seed 001: ``subscribe_test`` / ``unsubscribe_test``.
TEST: Schema = _object("an object {test_id}", ("test_id",), test_id=ID)

SOCKETIO_EVENTS: dict[str, Schema] = {
    "ping": ANY,
    "echo": ANY,
    "subscribe": SUBSCRIBE,
    "unsubscribe": UNSUBSCRIBE,
    "subscribe_batch": BATCH,
    "unsubscribe_batch": BATCH,
    "subscribe_test": TEST,
    "unsubscribe_test": TEST,
}


def frame(type_: str, payload: Schema) -> Schema:
    """A plain-WebSocket frame: ``payload``'s object with ``"type": type_`` in it."""
    schema = {**payload, "type": "object", "required": ["type", *payload.get("required", [])]}
    schema["properties"] = {"type": {"const": type_}, **payload.get("properties", {})}
    return schema


#: Any frame that names its type (what every plain endpoint parses first).
FRAME: Schema = _object('a JSON object with a string "type"', ("type",), type={"type": "string"})
#: The first frame when the handshake carried no token.
AUTH: Schema = frame("auth", _object("an object {type: auth, token}", ("token",), token={"type": "string"}))

PLAIN_COMMANDS: dict[str, dict[str, Schema]] = {
    # /ws
    "herald": {
        "ping": frame("ping", _object("an object {type: ping, data?}", data=ANY)),
        "echo": frame("echo", _object("an object {type: echo, ...}")),
        "subscribe": frame("subscribe", JOB),
        "unsubscribe": frame("unsubscribe", _object("an object {job_id}", ("job_id",), job_id=ID)),
        "subscribe_batch": frame("subscribe_batch", BATCH),
        "unsubscribe_batch": frame("unsubscribe_batch", BATCH),
    },
    # /ws/<client_id> (seed 002); any other type is echoed back
    "client": {
        "ping": frame("ping", _object("an object {type: ping}")),
        "subscribe": frame(
            "subscribe",
            _object("an object {type: subscribe, event}", ("event",), event={"type": "string", "minLength": 1}),
        ),
    },
    # /api/v1/ws/executions/<id> (seed 004)
    "execution": {"ping": frame("ping", _object("an object {type: ping}"))},
}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)  # as jsonschema


Test = Callable[[Any], bool]

#: The keywords :func:`compile_schema` knows (a schema with any other is not compiled).
_COMPILED_KEYWORDS = frozenset(
    {"description", "type", "const", "required", "properties", "anyOf", "minimum", "maximum", "pattern", "minLength"}
    | {"if", "then", "else"}
)
_TYPE_TESTS: dict[str, Test] = {
    "integer": is_integer,
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
    "object": lambda value: isinstance(value, dict),
}


def compile_schema(schema: Schema) -> Test | None:
    """An exact ``is valid`` for ``schema``, as :data:`~app.inputs.SchemaValidator` decides it, built from the
    keywords Herald's schemas use; None when the schema uses any other.

    jsonschema walks a schema anew on every check (~100 µs for a ``subscribe``: a sixth of
    a reconnect storm's CPU); valid messages — nearly all — only need this test. An
    invalid one still goes through jsonschema, for the error that names the field.
    ``tests/test_commands.py`` holds the two to the same verdict on generated messages.
    """
    if not isinstance(schema, dict) or not schema.keys() <= _COMPILED_KEYWORDS:
        return None
    tests: list[Test] = []
    if "type" in schema:
        type_test = _TYPE_TESTS.get(schema["type"]) if isinstance(schema["type"], str) else None
        if type_test is None:
            return None
        tests.append(type_test)
    if "const" in schema:
        const = schema["const"]
        if not isinstance(const, bool | str):
            return None
        tests.append(lambda value: type(value) is type(const) and value == const)  # True is not 1
    if "required" in schema:
        required = tuple(schema["required"])
        tests.append(lambda value: not isinstance(value, dict) or all(name in value for name in required))
    if "properties" in schema:
        properties: list[tuple[str, Test]] = []
        for name, subschema in schema["properties"].items():
            test = compile_schema(subschema)
            if test is None:
                return None
            properties.append((name, test))
        tests.append(
            lambda value: not isinstance(value, dict) or all(test(value[n]) for n, test in properties if n in value)
        )
    if "anyOf" in schema:
        options = [compile_schema(subschema) for subschema in schema["anyOf"]]
        if any(option is None for option in options):
            return None
        tests.append(lambda value: any(option(value) for option in options))  # type: ignore[misc]
    if "minimum" in schema:
        low = schema["minimum"]
        tests.append(lambda value: not _is_number(value) or not value < low)  # (NaN passes, as in jsonschema)
    if "maximum" in schema:
        high = schema["maximum"]
        tests.append(lambda value: not _is_number(value) or not value > high)
    if "pattern" in schema:
        pattern = re.compile(schema["pattern"])
        tests.append(lambda value: not isinstance(value, str) or pattern.search(value) is not None)
    if "minLength" in schema:
        shortest = schema["minLength"]
        tests.append(lambda value: not isinstance(value, str) or len(value) >= shortest)
    if "if" in schema:
        condition, then, otherwise = (compile_schema(schema.get(key, {})) for key in ("if", "then", "else"))
        if condition is None or then is None or otherwise is None:
            return None
        tests.append(lambda value: then(value) if condition(value) else otherwise(value))  # type: ignore[misc]
    return lambda value: all(test(value) for test in tests)


_validators: dict[int, tuple[Schema, Any, Test | None]] = {}


def check(schema: Schema, value: Any, what: str) -> Any:
    """``value`` when it fits ``schema``; else ``ValidationFailed`` ``invalid_payload`` that
    names the first field at fault and what it must be."""
    hit = _validators.get(id(schema))
    if hit is None or hit[0] is not schema:  # kept with its schema: an id is never reused for another
        hit = _validators[id(schema)] = (schema, SchemaValidator(schema), compile_schema(schema))
    if hit[2] is not None and hit[2](value):
        return value
    error = min(hit[1].iter_errors(value), key=lambda e: (len(e.absolute_path), list(map(str, e.path))), default=None)
    if error is None:
        return value
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        message = f"{what}: {error.message}"
    elif "description" in error.schema:
        message = f"{path or what} must be {error.schema['description']}"
    else:
        message = f"{path or what}: {error.message}"
    raise ValidationFailed(message, code="invalid_payload", details={"path": path or None})
