"""One declaration per view: what ``/api/openapi.json`` states is what the server enforces."""

from __future__ import annotations

import re

import pytest

from app.api.schema import ERROR_SCHEMA, openapi_document


@pytest.fixture
def document(app):
    with app.app_context():
        return openapi_document(app)


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_every_rest_view_declares_itself_and_no_websocket_is_in_the_document(app, document):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api") and not rule.endpoint.startswith("ws."):
            assert hasattr(app.view_functions[rule.endpoint], "__herald_operation__"), rule.rule
    assert not [path for path in document["paths"] if "/ws/" in path]


def test_every_error_answer_is_documented_with_the_error_body(document):
    for method, path, operation in operations(document):
        codes = {int(code) for code in operation["responses"]}
        if operation.get("security"):
            assert 401 in codes, (method, path)
        if "{" in path:
            assert {400, 404} <= codes, (method, path)  # invalid_id, not_found
        if operation.get("requestBody") or operation["parameters"]:
            assert 400 in codes, (method, path)
        for code in codes - set(range(200, 300)):
            assert operation["responses"][str(code)]["content"]["application/json"]["schema"] == ERROR_SCHEMA


def test_integer_query_bounds_in_the_document_are_the_ones_enforced(app, client, auth, document):
    headers = auth.headers(auth.token_for("alice"))
    checked = 0
    for method, path, operation in operations(document):
        if method != "GET" or "{" in path:
            continue
        for parameter in operation["parameters"]:
            schema = parameter["schema"]
            if parameter["in"] != "query" or schema.get("type") != "integer":
                continue
            name, low, high = parameter["name"], schema["minimum"], schema["maximum"]
            assert low <= schema["default"] <= high
            for value, ok in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
                response = client.get(f"{path}?{name}={value}", headers=headers)
                assert (response.status_code == 200) is ok, (path, name, value, response.get_json())
                if not ok:
                    assert response.get_json()["error"]["code"] == "validation_error"
            checked += 1
    assert checked >= 8


def test_an_enum_query_parameter_refuses_what_it_does_not_list(client, auth):
    response = client.get("/api/jobs?status=sleeping", headers=auth.headers(auth.token_for("alice")))
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"path": "status"}


@pytest.mark.parametrize("body", ["[1]", '"x"', '{"refresh_token": 5}'])
def test_refresh_and_logout_refuse_a_body_of_the_wrong_shape_with_400(client, auth, body):
    token = auth.token_for("alice")
    for path in ("/api/auth/refresh", "/api/auth/logout"):
        response = client.post(path, data=body, content_type="application/json", headers=auth.headers(token))
        assert response.status_code == 400, (path, response.status_code)
        assert response.get_json()["error"]["code"] == "validation_error"
    assert client.get("/api/auth/me", headers=auth.headers(token)).status_code == 200


def test_operation_summaries_come_from_the_view_docstrings(document):
    summary = document["paths"]["/api/jobs/{job_id}/cancel"]["post"]["summary"]
    assert re.match(r"Cancel a pending or running job", summary)
