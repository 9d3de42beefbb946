"""The inbound socket schemas (``app.realtime.commands``) cover every handler, and only those."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ValidationFailed
from app.extensions import socketio
from app.inputs import SchemaValidator
from app.realtime.commands import AUTH, FRAME, PLAIN_COMMANDS, SOCKETIO_EVENTS, check, compile_schema
from app.realtime.dialects.client import ClientDialect
from app.realtime.dialects.executions import ExecutionDialect
from app.realtime.dialects.herald import HeraldDialect

from .message_strategies import JSON_VALUES, broken, from_schema


def test_every_socketio_event_handled_has_a_schema_and_every_schema_a_handler(app):
    handled = {name for name, _handler, _ns in socketio.handlers} | set(socketio.server.handlers.get("/", {}))
    assert handled - {"connect", "disconnect", "*"} == set(SOCKETIO_EVENTS)


@pytest.mark.parametrize("dialect", [HeraldDialect(), ClientDialect("tab"), ExecutionDialect("1")])
def test_every_plain_command_has_a_handler_and_every_handler_a_schema(dialect):
    handlers = {name.removeprefix("on_") for name in dir(dialect) if name.startswith("on_")}
    assert handlers == set(PLAIN_COMMANDS[dialect.name])


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"job_id": "seven"}, "job_id must be an integer from 1 to 2^63-1"),
        ({"job_id": 1.5}, "job_id must be an integer from 1 to 2^63-1"),
        ({"job_id": 1, "last_seq": "5"}, "last_seq must be an integer from 0 to 2^63-1, or null"),
        ({}, "'job_id' is a required property"),
        ([1], "subscribe must be an object {job_id, last_seq?} or {all: true}"),
    ],
)
def test_a_payload_that_does_not_fit_is_invalid_payload_naming_the_field(payload, needle):
    with pytest.raises(ValidationFailed) as refused:
        check(SOCKETIO_EVENTS["subscribe"], payload, "subscribe")
    assert refused.value.code == "invalid_payload" and needle in refused.value.message


def test_ids_may_be_digits_and_all_needs_no_id():
    assert check(SOCKETIO_EVENTS["subscribe"], {"job_id": "42", "last_seq": None}, "subscribe")
    assert check(SOCKETIO_EVENTS["subscribe"], {"all": True}, "subscribe")


# -- the compiled test: the same verdict as jsonschema ---------------------------------------

ALL_SCHEMAS = {f"socketio {name}": schema for name, schema in SOCKETIO_EVENTS.items()} | {
    f"{dialect} {name}": schema for dialect, commands in PLAIN_COMMANDS.items() for name, schema in commands.items()
}
ALL_SCHEMAS |= {"frame": FRAME, "auth": AUTH}

#: Values at the edges of what the schemas take.
EDGES = st.sampled_from(
    [0, 1, -1, 1.0, 0.0, 1.5, True, False, None, "", "7", "07", "7\n", " 7", "9" * 19, "9" * 20, 2**63 - 1, 2**63]
    + [float("nan"), float("inf"), "ping", "subscribe", "auth", "x"]
)


def test_every_schema_herald_declares_is_compiled():
    assert [name for name, schema in ALL_SCHEMAS.items() if compile_schema(schema) is None] == []
    assert compile_schema({"type": "array"}) is None and compile_schema({"additionalProperties": False}) is None


@pytest.mark.parametrize("name", sorted(ALL_SCHEMAS))
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_compiled_test_and_jsonschema_agree_on_every_message(name, data):
    schema = ALL_SCHEMAS[name]
    value = data.draw(from_schema(schema) | broken(schema, EDGES | JSON_VALUES) | EDGES)
    assert compile_schema(schema)(value) == SchemaValidator(schema).is_valid(value), value
