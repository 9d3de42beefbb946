"""Hostile input over REST and Socket.IO (in-process): a clear 400 / ``error``, never a 500."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from app.extensions import socketio
from app.inputs import INT64_MAX

HUGE_IDS = [str(INT64_MAX + 1), str(2**64), "9" * 30, "0"]
#: Path segments where an id belongs that are no whole number at all.
NOT_IDS = ["-1", "1.5", "abc", "1e3", "%EF%BC%91"]  # the last: a full-width digit one
DEEP = "[" * 10_000 + "]" * 10_000
ALIAS_BOMB = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def id_routes(app):
    """Every (method, path template) whose path carries an ``<id:…>``."""
    for rule in app.url_map.iter_rules():
        if "<id:" in rule.rule:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield method, rule.rule


def test_every_id_route_answers_400_for_ids_outside_64_bits_or_not_numbers(app, client, auth):
    headers = auth.headers(auth.token_for("alice"))
    routes = list(id_routes(app))
    assert len(routes) >= 10
    for method, template in routes:
        for huge in HUGE_IDS + NOT_IDS:
            path = re.sub(r"<id:\w+>", huge, template).replace("<name>", "report.csv")
            response = client.open(path, method=method, headers=headers, json={})
            assert response.status_code == 400, (method, path, response.status_code)
            if path.startswith("/api"):
                assert response.get_json()["error"]["code"] == "invalid_id", path


def test_a_static_route_beside_an_id_route_is_still_served(client):
    # /test-cases/new sits beside /test-cases/<id:case_id>, whose converter takes any segment.
    response = client.get("/test-cases/new")
    assert response.status_code == 200 and "invalid_id" not in response.get_data(as_text=True)


@pytest.mark.parametrize("after", [str(INT64_MAX + 1), "-1", "1e9", "9" * 5000])
def test_offsets_outside_the_range_are_a_validation_error(client, auth, after):
    token = auth.token_for("alice")
    job = client.post("/api/jobs", json={"kind": "simulate", "params": {"steps": 1}}, headers=auth.headers(token))
    job_id = job.get_json()["job"]["id"]
    for path in (
        f"/api/jobs/{job_id}/events?after={after}",
        f"/api/jobs?offset={after}",
        f"/api/uploads?offset={after}",
        f"/api/test-cases?offset={after}",
    ):
        response = client.get(path, headers=auth.headers(token))
        assert response.status_code == 400, path
        assert response.get_json()["error"]["code"] == "validation_error"


def test_the_largest_offset_is_served(client, auth):
    token = auth.token_for("alice")
    job = client.post("/api/jobs", json={"kind": "simulate", "params": {"steps": 1}}, headers=auth.headers(token))
    response = client.get(
        f"/api/jobs/{job.get_json()['job']['id']}/events?after={INT64_MAX}", headers=auth.headers(token)
    )
    assert response.status_code == 200 and response.get_json()["events"] == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (DEEP, "nested deeper"),
        ('{"username": "a", "password": ' + str(2**64) + "}", "64-bit"),
        ('{"username": NaN, "password": "x"}', "not a JSON number"),
        ('{"username": "a", ', "Expecting"),
    ],
)
def test_malformed_json_before_login_is_a_400_that_says_why(client, body, needle):
    response = client.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_json" and needle in error["message"]


def test_deep_json_is_refused_on_every_json_route(app, client, auth):
    headers = auth.headers(auth.token_for("alice"))
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api") or not ({"POST", "PUT"} & (rule.methods or set())):
            continue
        path = re.sub(r"<id:\w+>", "1", rule.rule)
        for method in {"POST", "PUT"} & (rule.methods or set()):
            response = client.open(path, method=method, data=DEEP, content_type="application/json", headers=headers)
            assert 400 <= response.status_code < 500, (method, path, response.status_code)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/jobs", '{"kind": "external", "name": "x", "total": 1e400}'),
        ("/api/v1/executions", '{"workflow_id": 1, "input_data": {"n": -1e400}}'),
    ],
)
def test_a_number_past_a_double_is_refused_not_stored_as_infinity(client, auth, path, body):
    response = client.post(
        path, data=body, content_type="application/json", headers=auth.headers(auth.token_for("alice"))
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_json" and "range of a double" in error["message"]


def test_a_whole_float_is_no_integer_parameter(client, auth):
    # JSON Schema counts 2.0 as an integer: the job was accepted and failed on range(2.0).
    response = client.post(
        "/api/jobs", json={"kind": "simulate", "params": {"steps": 2.0}}, headers=auth.headers(auth.token_for("alice"))
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and "steps: 2.0 is not of type 'integer'" in error["message"]


def test_rest_writes_a_stored_nan_or_infinity_as_null(app):
    # What a browser's JSON.parse reads; the sockets write the same. A value Flask's JSON
    # converts (a dataclass) is cleaned too.
    @dataclasses.dataclass
    class Reading:
        value: float

    app.add_url_rule(
        "/api/test-non-finite",
        "test_non_finite",
        lambda: {"a": [math.nan, math.inf], "b": {"c": -math.inf}, "d": 1.5, "e": Reading(math.nan)},
    )
    response = app.test_client().get("/api/test-non-finite")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": [None, None], "b": {"c": None}, "d": 1.5, "e": {"value": None}}


def test_json_bodies_over_the_limit_are_413(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    body = '{"kind": "simulate", "params": {"pad": "' + "x" * (1024 * 1024) + '"}}'
    response = client.post("/api/jobs", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "body_too_large"


def test_a_yaml_alias_bomb_is_an_invalid_test_case(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    response = client.post("/api/test-cases", data=ALIAS_BOMB, content_type="application/yaml", headers=headers)
    assert response.status_code == 400
    assert "more than" in response.get_json()["error"]["message"]


def test_workflow_ids_beyond_64_bits_in_a_body_are_refused(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    response = client.post("/api/v1/executions", json={"workflow_id": "9" * 25}, headers=headers)
    assert response.status_code == 400


def sio_client(app, token):
    return socketio.test_client(app, auth={"token": token})


@pytest.mark.parametrize(
    "payload",
    [
        {"job_id": INT64_MAX + 1},
        {"job_id": str(2**64)},
        {"job_id": 1, "last_seq": INT64_MAX + 1},
        {"job_id": 1, "last_seq": "5"},
        {"job_id": 1, "last_seq": -1},
        {"job_id": 1, "last_seq": 1.5},
    ],
)
def test_socketio_subscribe_with_out_of_range_numbers_gets_an_error_and_stays(app, auth, payload):
    sio = sio_client(app, auth.token_for("alice"))
    ack = sio.emit("subscribe", payload, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] in {"invalid_payload", "invalid_json"}
    assert sio.emit("ping", {}, callback=True) == {"ok": True}


def test_socketio_deeply_nested_message_gets_an_error_and_stays(app, auth):
    sio = sio_client(app, auth.token_for("alice"))
    sio.get_received()
    # The test client cannot encode this (the stdlib recurses): hand the raw packet to the server.
    socketio.server._handle_eio_message(sio.eio_sid, '2["subscribe",' + DEEP + "]")
    errors = [r["args"][0] for r in sio.get_received() if r["name"] == "error"]
    assert errors and errors[0]["code"] == "invalid_json" and "nested deeper" in errors[0]["message"]
    assert sio.emit("ping", {}, callback=True) == {"ok": True}
