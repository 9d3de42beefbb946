"""Fuzz the real server from its own declarations, and throw hostile input at every route.

* REST: schemathesis reads ``/api/openapi.json`` and sends generated requests (valid and
  invalid) to every operation with a real token: no 5xx, every answer one the document
  states, with the body it states.
* Sockets: hypothesis builds messages from the JSON Schemas the server checks inbound
  messages with (``app.realtime.commands``), plus broken variants of them, for every
  Socket.IO event and every plain-WebSocket dialect: each gets the reply the protocol
  promises, a malformed one an ``error``, and the connection stays.
* Hostile input (ids and offsets of 2^63 and beyond, JSON 10,000 deep, a YAML alias bomb)
  on every route of the document and every socket command: 400 / ``error``, never a 5xx.

Every run is bounded (fixed examples, derandomized) and each test ends by checking that
the server still answers and its log holds no traceback.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
import socketio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from websockets.sync.client import connect as ws_connect

from app.errors import ValidationFailed
from app.inputs import INT64_MAX, INT64_MIN
from app.realtime.commands import FRAME, PLAIN_COMMANDS, SOCKETIO_EVENTS, check

from ..message_strategies import JSON_VALUES, broken, from_schema
from .plain_ws import KindsServer, start_server

#: Examples per REST operation and generation mode (positive, negative).
REST_EXAMPLES = 4
#: Examples per socket transport (Socket.IO, and each plain dialect).
SOCKET_EXAMPLES = 80
#: Fields that name an id: their value is checked against ``1..2^63-1`` after the schema.
ID_FIELDS = ("job_id", "batch_execution_id", "test_id")
DEEP = "[" * 10_000 + "]" * 10_000
ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
)
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),  # bounded: a failure is reported as found, not shrunk
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    # The fuzzers send as fast as the server answers: the inbound rate limit is not under test.
    # SSE streams ping twice a second: a stream with no events still lets the reader stop.
    yield from start_server(
        tmp_path_factory.mktemp("fuzz"),
        SOCKET_RATE_LIMIT="1000000",
        SOCKET_RATE_BURST="1000000",
        SSE_HEARTBEAT_SECONDS="0.5",
    )


@pytest.fixture(scope="module")
def alice(server: KindsServer) -> dict[str, Any]:
    """Alice's tokens and a few resources of hers (a finished job, a case, a workflow, a
    long execution), so generated ids sometimes hit something that exists."""
    tokens = requests.post(
        server.url + "/api/auth/login", json={"username": "alice", "password": "password123"}, timeout=10
    ).json()
    token = tokens["access_token"]
    job = server.submit(token, steps=1, interval=0)
    case_id = _fresh_case(server, token)
    workflow = server.api(
        "POST",
        "/api/workflows",
        token,
        json={
            "name": "w",
            "steps": [{"kind": "simulate", "params": {"steps": 100_000, "interval": 1, "log_every": 0}}],
        },
    )
    execution = server.api("POST", "/api/v1/executions", token, json={"workflow_id": workflow.json()["workflow"]["id"]})
    assert execution.status_code == 201, execution.text
    external = server.api("POST", "/api/jobs", token, json={"kind": "external", "name": "fuzzed"}).json()
    yield {
        **tokens,
        "producer_token": external["producer_token"],
        "external_job_id": external["job"]["id"],
        "job_id": job["id"],
        "case_id": case_id,
        "workflow_id": workflow.json()["workflow"]["id"],
        "execution_id": execution.json()["id"],
    }
    server.api("POST", f"/api/jobs/{execution.json()['id']}/cancel", token)


def assert_server_healthy(server: KindsServer) -> None:
    """The process is up, answers, and logged no traceback."""
    assert server.proc is not None and server.proc.poll() is None, "the server process died"
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 : log.index("Traceback") + 3000]


# -- REST: schemathesis against the document -------------------------------------------------


def test_every_rest_operation_answers_generated_requests_as_documented_without_a_5xx(server, alice):
    """Valid and invalid requests, every operation: only documented statuses and bodies, no 5xx."""
    schema = schemathesis.openapi.from_url(server.url + "/api/openapi.json", timeout=10)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    failures: list[str] = []
    counts: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(server, alice, operation, mode, checks, counts)
            except Exception as exc:  # every operation runs; all failures are reported together
                failures.append(f"{label} ({mode.value}): {exc}"[:3000])
    print(f"schemathesis: {sum(counts.values())} requests over {len(counts)} operations")
    assert not failures, "\n\n".join(failures)
    assert len(counts) == len(operations)
    assert_server_healthy(server)


def _fuzz_operation(
    server: KindsServer, alice: dict[str, Any], operation: Any, mode: Any, checks: list[Any], counts: dict[str, int]
) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(SETTINGS, max_examples=REST_EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        counts[label] = counts.get(label, 0) + 1
        headers = (
            {} if _negates_auth(case) else {"Authorization": f"Bearer {_token_for(server, alice, operation.path)}"}
        )
        # An event stream may never end: schemathesis reads it for the read timeout, at most.
        streams = operation.path.endswith("/stream")
        response = case.call(headers=headers, **({"timeout": (10, 2)} if streams else {}))
        case.validate_response(response, checks=checks)

    run()


def _negates_auth(case: Any) -> bool:
    """True when a negative case is about the credentials (left out or broken on purpose):
    then it goes as generated, without our token."""
    if case.meta is None or not case.meta.generation.mode.is_negative:
        return False
    data = case.meta.phase.data
    names = [getattr(data, "parameter", None)] + [getattr(m, "parameter", None) for m in getattr(data, "mutations", ())]
    return "authorization" in {str(name).lower() for name in names if name} or "Authorization" in (case.headers or {})


def _token_for(server: KindsServer, alice: dict[str, Any], path: str) -> str:
    """Alice's access token; her refresh token for ``refresh``; a fresh one for ``logout``
    (which revokes what it is given)."""
    if path == "/api/auth/refresh":
        return str(alice["refresh_token"])
    if path == "/api/auth/logout":
        return server.login("alice")
    if path == REPORT_PATH:
        return str(alice["producer_token"])
    return str(alice["access_token"])


#: The one route that takes an external job's producer token rather than an access token.
REPORT_PATH = "/api/jobs/{job_id}/report"


# -- hostile input on every route of the document -----------------------------------------------


def document_operations(server: KindsServer) -> list[tuple[str, str, dict[str, Any]]]:
    document = requests.get(server.url + "/api/openapi.json", timeout=10).json()
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def _fill(path: str, operation: dict[str, Any], ids: dict[str, Any]) -> str:
    """``path`` with its parameters: ``ids`` where given, else a harmless valid value."""
    for parameter in operation["parameters"]:
        if parameter["in"] == "path":
            default = 1 if parameter["schema"].get("type") == "integer" else "x.csv"
            path = path.replace("{" + parameter["name"] + "}", str(ids.get(parameter["name"], default)))
    return path


def _fresh_case(server: KindsServer, token: str) -> int:
    case = {"name": "c", "steps": [{"name": "s", "request": {"url": "http://127.0.0.1:9/"}}]}
    return int(server.api("POST", "/api/test-cases", token, json=case).json()["test_case"]["id"])


def test_every_route_answers_ids_offsets_and_bodies_beyond_the_bounds_with_400(server, alice):
    """Ids and offsets of 2^63 and beyond, JSON 10,000 deep, a YAML alias bomb, on every
    operation the document lists: a 4xx with the error body, never a 5xx."""
    token = alice["access_token"]
    seen = {"path id": 0, "query": 0, "deep body": 0, "alias bomb": 0}
    for method, path, operation in document_operations(server):
        hostile: list[tuple[str, dict[str, Any]]] = []
        path_ids = [
            p["name"] for p in operation["parameters"] if p["in"] == "path" and p["schema"]["type"] == "integer"
        ]
        for name in path_ids:
            for huge in (INT64_MAX + 1, 2**64, "9" * 30):
                hostile.append(("path id", {"url": _fill(path, operation, {name: huge})}))
        for parameter in operation["parameters"]:
            if parameter["in"] == "query" and parameter["schema"].get("type") == "integer":
                for huge in (INT64_MAX + 1, 2**64, -(2**63) - 1):
                    hostile.append(("query", {"url": _fill(path, operation, {}), "params": {parameter["name"]: huge}}))
        content = operation.get("requestBody", {}).get("content", {})
        own = {"job_id": alice["external_job_id"]} if path == REPORT_PATH else {}  # its token's job
        if "application/json" in content:
            hostile.append(
                ("deep body", {"url": _fill(path, operation, own), "data": DEEP, "content_type": "application/json"})
            )
        if "application/yaml" in content:
            ids = {"case_id": _fresh_case(server, token)}
            hostile.append(
                (
                    "alias bomb",
                    {"url": _fill(path, operation, ids), "data": ALIAS_BOMB, "content_type": "application/yaml"},
                )
            )
        for what, request in hostile:
            bearer = server.login("alice") if path == "/api/auth/logout" else token
            if path == REPORT_PATH:
                bearer = alice["producer_token"]
            headers = {"Authorization": f"Bearer {bearer}"}
            if "content_type" in request:
                headers["Content-Type"] = request.pop("content_type")
            url = server.url + request.pop("url")
            response = requests.request(method, url, headers=headers, timeout=30, **request)
            assert response.status_code in (400, 413), (method, url, what, response.status_code, response.text[:300])
            error = response.json()["error"]
            assert error["code"] in {"invalid_id", "validation_error", "invalid_json", "invalid_test_case"}, error
            seen[what] += 1
    assert seen["path id"] >= 36 and seen["query"] >= 36 and seen["deep body"] >= 8 and seen["alias bomb"] == 2, seen
    assert_server_healthy(server)


def test_every_route_with_an_id_answers_another_users_resource_as_not_found(server, alice):
    """Bob naming alice's job, case, workflow, execution or upload on any operation of the
    document gets the same 404 as for a missing one, and changes nothing."""
    token = alice["access_token"]
    upload = requests.post(
        server.url + "/api/uploads",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("a.csv", b"x\n1\n")},
        timeout=30,
    )
    assert upload.status_code == 201, upload.text
    ids = {
        "job_id": alice["job_id"],
        "case_id": _fresh_case(server, token),
        "workflow_id": alice["workflow_id"],
        "execution_id": alice["execution_id"],
        "upload_id": upload.json()["upload"]["upload_id"],
    }
    bob = server.login("bob")
    tried = 0
    for method, path, operation in document_operations(server):
        names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        if not names & set(ids) or path == REPORT_PATH:
            continue  # (a producer token, not ownership, opens the report route: test_external_producers.py)
        response = server.api(method, _fill(path, operation, ids), bob, json={})
        assert response.status_code == 404, (method, path, response.status_code, response.text[:300])
        assert response.json()["error"]["code"] == "not_found"
        tried += 1
    assert tried >= 12, tried
    for check_path in (
        f"/api/jobs/{ids['job_id']}",
        f"/api/test-cases/{ids['case_id']}",
        f"/api/uploads/{ids['upload_id']}",
    ):
        assert server.api("GET", check_path, token).status_code == 200, check_path
    assert_server_healthy(server)


@pytest.mark.parametrize("path", ["/ws", "/ws/tab-1", "/api/v1/ws/executions/1"])
def test_plain_http_on_a_websocket_endpoint_is_a_400_not_a_5xx(server, alice, path):
    """The WebSocket endpoints are not in the document (OpenAPI cannot describe them); a
    request that is not an upgrade still gets a 4xx."""
    response = requests.get(server.url + path + "?token=" + alice["access_token"], timeout=10)
    assert response.status_code == 400, (path, response.status_code, response.text[:200])
    assert_server_healthy(server)


# -- sockets: messages from the server's own schemas ----------------------------------------------


def _wire_safe(value: Any) -> bool:
    """True when JSON carries ``value`` within Herald's bounds (no NaN/Infinity, 64-bit integers)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, dict):
        return all(_wire_safe(v) for v in value.values())
    if isinstance(value, list):
        return all(_wire_safe(v) for v in value)
    return True


def _fits(schema: dict[str, Any], value: Any) -> bool:
    """The server's own verdict on shape (``commands.check``), plus the id range it reads after."""
    try:
        check(schema, value, "fuzz")
    except ValidationFailed:
        return False
    if isinstance(value, dict) and value.get("all") is not True:  # with {all: true} no id is read
        for name in ID_FIELDS:
            if isinstance(value.get(name), str) and not 1 <= int(value[name]) <= INT64_MAX:
                return False
    return True


def expected_refusal(schema: dict[str, Any] | None, value: Any) -> set[str] | None:
    """The error codes a message must be refused with, or None when it is acceptable."""
    if not _wire_safe(value):
        return {"invalid_json"}
    if schema is not None and not _fits(schema, value):
        return {"invalid_payload"}
    return None


def test_socketio_events_from_their_schemas_get_their_reply_or_an_error_and_the_connection_stays(server, alice):
    token = alice["access_token"]
    sio = socketio.Client(reconnection=False)
    errors: list[Any] = []
    sio.on("error", errors.append)
    sio.connect(server.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    events = sorted(SOCKETIO_EVENTS)
    unknown = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
        lambda name: name not in SOCKETIO_EVENTS and name not in {"connect", "disconnect", "message"}
    )
    messages = st.one_of(
        st.sampled_from(events).flatmap(lambda e: st.tuples(st.just(e), from_schema(SOCKETIO_EVENTS[e]))),
        st.sampled_from(events).flatmap(lambda e: st.tuples(st.just(e), broken(SOCKETIO_EVENTS[e]))),
        st.tuples(unknown, JSON_VALUES),
    )
    sent = {"accepted": 0, "refused": 0}

    @settings(SETTINGS, max_examples=SOCKET_EXAMPLES)
    @given(message=messages)
    def run(message: tuple[str, Any]) -> None:
        event, payload = message
        ack = sio.call(event, payload, timeout=15)
        assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), (event, payload, ack)
        refusal = expected_refusal(SOCKETIO_EVENTS.get(event), payload)
        if event not in SOCKETIO_EVENTS and refusal is None:
            refusal = {"unknown_event"}
        if refusal is not None:
            assert ack["ok"] is False and ack["error"]["code"] in refusal, (event, payload, ack)
        elif not ack["ok"]:  # a well-formed request the server may still refuse
            assert ack["error"]["code"] in {"not_found"}, (event, payload, ack)
        sent["accepted" if ack["ok"] else "refused"] += 1
        assert sio.connected

    try:
        run()
        assert sio.call("ping", {}, timeout=10) == {"ok": True}
    finally:
        sio.disconnect()
    print(f"socket.io: {sent}")
    assert sent["accepted"] >= 10 and sent["refused"] >= 10, sent
    assert_server_healthy(server)


#: Plain endpoints: (path for a dialect, marker frame, reply types that answer a client frame).
def _plain_endpoints(alice: dict[str, Any]) -> dict[str, str]:
    return {"herald": "/ws", "client": "/ws/fuzz-tab", "execution": f"/api/v1/ws/executions/{alice['execution_id']}"}


#: What each dialect answers a well-formed command with (types, in order; ``None``: nothing).
REPLIES: dict[str, dict[str, tuple[str, ...]]] = {
    "herald": {
        "ping": ("pong",),
        "echo": ("echo",),
        "subscribe": ("subscribed",),
        "unsubscribe": ("unsubscribed",),
        "subscribe_batch": ("batch_execution_update",),
        "unsubscribe_batch": (),
    },
    "client": {"ping": ("pong",), "subscribe": ("subscription",)},
    "execution": {"ping": ("pong",)},
}
#: Frames that answer a client frame (anything else is a live message and is ignored here).
REPLY_TYPES = {"error", "pong", "echo", "subscribed", "unsubscribed", "batch_execution_update", "subscription"}


def _plain_expectation(dialect: str, text: str, value: Any) -> tuple[set[str] | None, tuple[str, ...]]:
    """(error codes the frame must be refused with, or None; reply types when accepted)."""
    if value is _NOT_JSON or not _wire_safe(value):
        return {"invalid_json"}, ()
    if not _fits(FRAME, value):
        return {"invalid_payload"}, ()
    if value["type"] == "auth":
        return {"already_authenticated"}, ()
    schema = PLAIN_COMMANDS[dialect].get(value["type"])
    if schema is None:
        return ({"unknown_type"}, ()) if dialect != "client" else (None, ("echo",))
    if not _fits(schema, value):
        return {"invalid_payload"}, ()
    return None, REPLIES[dialect][value["type"]]


_NOT_JSON = object()


def _frames(dialect: str) -> st.SearchStrategy[str]:
    """Text frames for ``dialect``: its commands from their schemas, broken variants, other
    types, non-objects and text that is not JSON."""
    commands = PLAIN_COMMANDS[dialect]
    names = sorted(commands)
    values = st.one_of(
        st.sampled_from(names).flatmap(lambda name: from_schema(commands[name])),
        st.sampled_from(names).flatmap(lambda name: broken(commands[name])),
        st.builds(
            lambda t, v: {**v, "type": t}, st.text(max_size=10), st.dictionaries(st.text(max_size=6), JSON_VALUES)
        ),
        st.just({"type": "auth", "token": "x"}),
    )
    return values.map(lambda v: json.dumps(v)) | st.text(max_size=20)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


@pytest.mark.parametrize("dialect", sorted(PLAIN_COMMANDS))
def test_plain_websocket_frames_from_their_schemas_get_their_reply_or_an_error_and_the_socket_stays(
    server, alice, dialect
):
    path = _plain_endpoints(alice)[dialect]
    ws = ws_connect(
        server.ws_url + path + "?token=" + alice["access_token"], open_timeout=20, max_size=None, legacy=True
    )
    counter = iter(range(1_000_000))
    sent = {"accepted": 0, "refused": 0}

    def marker(n: int) -> tuple[str, Callable[[dict[str, Any]], bool]]:
        """A frame whose answer marks the end of the previous frame's replies."""
        if dialect == "herald":
            return json.dumps(
                {"type": "ping", "data": {"marker": n}}
            ), lambda m: m.get("data", {}).get("echo") == {"marker": n}
        if dialect == "client":
            return json.dumps(
                {"type": "fuzz-marker", "n": n}
            ), lambda m: m.get("data", {}).get("n") == n and m["data"].get("type") == "fuzz-marker"
        return json.dumps({"type": "ping"}), lambda m: m.get("type") == "pong"

    def replies_to(text: str) -> list[dict[str, Any]]:
        n = next(counter)
        end, is_end = marker(n)
        ws.send(text)
        ws.send(end)
        replies: list[dict[str, Any]] = []
        while True:
            frame = json.loads(ws.recv(timeout=15))
            if frame.get("type") not in REPLY_TYPES or (frame.get("type") == "error" and frame.get("seq") is not None):
                continue  # live job messages (an execution's status, a subscribed job's replay)
            if is_end(frame):
                if dialect == "execution" and _is_valid_ping(text) and not replies:
                    replies.append(frame)  # the fuzzed ping's own pong; the marker's comes next
                    continue
                return replies
            replies.append(frame)

    if dialect == "execution":
        # The greeting: the execution's current status (live status frames follow as it runs).
        assert json.loads(ws.recv(timeout=15))["type"] == "status"
    elif dialect == "client":
        assert json.loads(ws.recv(timeout=15))["type"] == "connection"

    @settings(SETTINGS, max_examples=SOCKET_EXAMPLES)
    @given(text=_frames(dialect))
    def run(text: str) -> None:
        value = _parse(text)
        refusal, accepted = _plain_expectation(dialect, text, value)
        replies = replies_to(text)
        kinds = tuple(frame["type"] for frame in replies)
        if refusal is not None:
            assert kinds == ("error",) and replies[0]["code"] in refusal, (text, replies)
            sent["refused"] += 1
        elif kinds == ("error",):  # well-formed, but about something that is not there or not yours
            assert replies[0]["code"] == "not_found", (text, replies)
            sent["refused"] += 1
        else:
            assert kinds == accepted, (text, replies)
            sent["accepted"] += 1

    try:
        run()
        ws.send(json.dumps({"type": "ping"}))
        assert any(json.loads(ws.recv(timeout=15)).get("type") == "pong" for _ in range(50))
    finally:
        ws.close()
    print(f"plain {dialect}: {sent}")
    assert sent["accepted"] >= 5 and sent["refused"] >= 10, sent
    assert_server_healthy(server)


def _is_valid_ping(text: str) -> bool:
    value = _parse(text)
    return isinstance(value, dict) and value.get("type") == "ping"


# -- hostile numbers and depth on every socket command ----------------------------------------


def _hostile_variants(schema: dict[str, Any]) -> Iterator[str]:
    """Raw JSON texts of one command: each id or seq field at 2^63, 2^64, -2^63-1 and as 30
    digits, and the message with a field nested 10,000 deep."""
    properties = schema.get("properties", {})
    base: dict[str, Any] = {}
    for name, field in properties.items():
        if name == "type":
            base[name] = field["const"]
        elif name in ID_FIELDS:
            base[name] = 1
        elif name == "event":
            base[name] = "e"
    for name in properties:
        if name in (*ID_FIELDS, "last_seq"):
            for huge in (str(INT64_MAX + 1), str(2**64), str(-(2**63) - 1), json.dumps("9" * 30)):
                yield json.dumps({**base, name: "@"}).replace('"@"', huge)
    yield json.dumps({**base, "deep": "@"}).replace('"@"', DEEP)


def test_every_socket_command_answers_huge_numbers_and_deep_json_with_an_error_and_stays(server, alice):
    """Every Socket.IO event and every plain command, from their schemas: out-of-range
    numbers and 10,000-deep JSON are an ``error`` (``invalid_payload`` / ``invalid_json``)."""
    token = alice["access_token"]
    sent = 0
    for dialect, commands in PLAIN_COMMANDS.items():
        ws = ws_connect(
            server.ws_url + _plain_endpoints(alice)[dialect] + "?token=" + token, open_timeout=20, legacy=True
        )
        try:
            for schema in commands.values():
                for text in _hostile_variants(schema):
                    ws.send(text)
                    reply = _next_reply(ws)
                    assert reply["type"] == "error" and reply["code"] in {"invalid_payload", "invalid_json"}, (
                        dialect,
                        text[:200],
                        reply,
                    )
                    sent += 1
            ws.send(json.dumps({"type": "ping"}))
            assert _next_reply(ws)["type"] == "pong"
        finally:
            ws.close()
    packets = [
        (event, f'["{event}",{text}]')
        for event, schema in SOCKETIO_EVENTS.items()
        for text in _hostile_variants(schema)
    ]
    acks = _raw_socketio(server, token, [packet for _, packet in packets])
    for (event, _), ack in zip(packets, acks, strict=False):
        assert ack["ok"] is False and ack["error"]["code"] in {"invalid_payload", "invalid_json"}, (event, ack)
        sent += 1
    assert acks[-1] == {"ok": True}  # the ping after them: still connected
    assert sent >= 50, sent
    assert_server_healthy(server)


def _next_reply(ws: Any) -> dict[str, Any]:
    while True:
        frame = json.loads(ws.recv(timeout=15))
        if frame.get("type") in REPLY_TYPES:
            return dict(frame)


def _raw_socketio(server: KindsServer, token: str, packets: list[str]) -> list[Any]:
    """Send raw Socket.IO event packets (what python-socketio's client cannot encode) with ack
    ids, then a ping; return the acks in order."""
    # A short close timeout: under gevent the server answers the close frame but leaves the
    # TCP connection to the client (the default would wait 10 s for it).
    ws = ws_connect(
        server.ws_url + f"/socket.io/?EIO=4&transport=websocket&token={token}",
        open_timeout=20,
        close_timeout=1,
        legacy=True,
    )
    try:
        assert ws.recv(timeout=15).startswith("0")
        ws.send("40")
        while not ws.recv(timeout=15).startswith("40"):
            pass
        packets = [*packets, '["ping",{}]']
        for number, packet in enumerate(packets, start=1):
            ws.send(f"42{number}{packet}")
        acks: dict[int, Any] = {}
        deadline = time.monotonic() + 30
        while len(acks) < len(packets) and time.monotonic() < deadline:
            frame = ws.recv(timeout=15)
            if frame == "2":
                ws.send("3")
            match = re.match(r"43(\d+)(.*)", frame, re.S)
            if match:
                acks[int(match.group(1))] = json.loads(match.group(2))[0]
        return [acks[number] for number in range(1, len(packets) + 1)]
    finally:
        ws.close()
