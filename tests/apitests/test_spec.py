"""Parsing and checking test cases: clear errors naming the line and path."""

from __future__ import annotations

import pytest

from app.apitests.spec import CaseError, check_case, parse_case_yaml, websocket_options

VALID = """\
name: ok
config:
  websocket: {enabled: true, port: 9001, send_logs: true}
steps:
  - name: one
    request: {url: http://localhost/x}
"""


def test_valid_case_parses_with_websocket_defaults():
    case = parse_case_yaml(VALID)
    assert websocket_options(case) == {
        "enabled": True,
        "host": "localhost",
        "port": 9001,
        "send_progress": False,
        "send_logs": True,
        "send_variables": False,
    }


def test_unknown_key_names_its_line_and_path():
    text = VALID + "    valdiate: []\n"
    with pytest.raises(CaseError) as info:
        parse_case_yaml(text)
    assert info.value.details["line"] == 7
    assert info.value.details["path"] == "steps[0].valdiate"
    assert info.value.message.startswith("line 7: steps[0].valdiate: unknown key 'valdiate'")


def test_yaml_syntax_error_names_its_line():
    with pytest.raises(CaseError) as info:
        parse_case_yaml("name: x\nsteps:\n  - name: [unclosed\n")
    assert info.value.details["line"] is not None and info.value.message.startswith("line ")
    assert "invalid YAML" in info.value.message


def test_unknown_operator_is_refused():
    text = VALID + "    validate:\n      - equals: [status_code, 200]\n"
    with pytest.raises(CaseError) as info:
        parse_case_yaml(text)
    assert info.value.details == {
        "path": "steps[0].validate[0].equals",
        "line": 8,
        "message": "unknown operator 'equals'; use one of eq, ne, contains, lt, gt, status_code",
    }


def test_json_case_errors_name_the_path_without_a_line():
    with pytest.raises(CaseError) as info:
        check_case({"name": "x", "steps": [{"name": "a"}]})
    assert info.value.details == {"path": "steps[0]", "line": None, "message": "missing required key 'request'"}
