"""The inbound socket schemas (``app.realtime.commands``) cover every handler, and only those."""

from __future__ import annotations

import pytest

from app.errors import ValidationFailed
from app.extensions import socketio
from app.realtime.commands import PLAIN_COMMANDS, SOCKETIO_EVENTS, check
from app.realtime.dialects.client import ClientDialect
from app.realtime.dialects.executions import ExecutionDialect
from app.realtime.dialects.herald import HeraldDialect


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
