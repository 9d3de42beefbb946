"""``app.inputs``: ids within 64 bits, client-named ids, bounded JSON documents."""

from __future__ import annotations

import json
import math
import re

import pytest

from app.errors import ValidationFailed
from app.inputs import (
    CLIENT_ID_REGEX,
    INT64_MAX,
    MAX_DEPTH,
    InvalidDocument,
    check_client_id,
    check_document,
    is_client_id,
    load_json,
    parse_id,
)


@pytest.mark.parametrize("value", ["tab-abc123", "a", "A_b-9", "x" * 64])
def test_client_ids_follow_the_one_rule(value):
    assert is_client_id(value) and check_client_id(value) == value
    assert re.search(CLIENT_ID_REGEX, value)  # the JSON Schema spelling agrees


@pytest.mark.parametrize("value", ["", "x" * 65, "a b", "a/b", "abc\n", "é", 7, None])
def test_anything_else_is_not_a_client_id(value):
    assert not is_client_id(value)
    with pytest.raises(ValidationFailed) as caught:
        check_client_id(value, "upload_id")
    assert caught.value.message == "upload_id must match [A-Za-z0-9_-]{1,64}"
    assert caught.value.details == {"path": "upload_id"}


@pytest.mark.parametrize("value", [1, "7", " 42 ", INT64_MAX, str(INT64_MAX)])
def test_parse_id_accepts_positive_64_bit_integers(value):
    assert parse_id(value, "job_id") == int(str(value).strip())


@pytest.mark.parametrize(
    "value", [0, -1, INT64_MAX + 1, str(INT64_MAX + 1), "9" * 400, 2**200, "1e3", "١٢", 1.0, True, None, [], "x"]
)
def test_parse_id_refuses_everything_else_with_a_validation_error(value):
    with pytest.raises(ValidationFailed) as caught:
        parse_id(value, "job_id")
    assert caught.value.code == "invalid_payload"
    assert "job_id" in caught.value.message


def test_load_json_refuses_deep_nesting_without_recursion_error():
    for depth in (MAX_DEPTH + 1, 10_000, 100_000):
        with pytest.raises(InvalidDocument, match="nested deeper"):
            load_json("[" * depth + "]" * depth)


def test_load_json_accepts_nesting_up_to_the_limit():
    text = '{"a":' * (MAX_DEPTH - 1) + "1" + "}" * (MAX_DEPTH - 1)
    assert load_json(text)["a"]["a"]["a"] is not None


@pytest.mark.parametrize("text", [str(2**63), str(-(2**63) - 1), "1" * 5000, '{"n": [1, 99999999999999999999]}'])
def test_load_json_refuses_integers_outside_64_bits(text):
    with pytest.raises(InvalidDocument, match="64-bit"):
        load_json(text)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_load_json_refuses_non_finite_constants(text):
    with pytest.raises(InvalidDocument, match="not a JSON number"):
        load_json(text)


@pytest.mark.parametrize("text", ["1e400", '{"total": -1e400}', "[1.5, 2e308]"])
def test_load_json_refuses_numbers_past_a_double(text):
    # Python reads them as infinity, which would be stored and come back as bare Infinity.
    with pytest.raises(InvalidDocument, match="range of a double"):
        load_json(text)


def test_check_document_refuses_non_finite_floats_yaml_can_write():
    for value in (math.inf, -math.inf, math.nan):
        with pytest.raises(InvalidDocument, match="range of a double"):
            check_document({"a": [value]})
    assert check_document({"a": [1e308, -2.5]}) == {"a": [1e308, -2.5]}


def test_load_json_reports_syntax_errors_as_invalid_documents():
    with pytest.raises(InvalidDocument, match="Expecting"):
        load_json('{"a": ')
    assert load_json(json.dumps({"ok": [1, 2.5, "x", None, True]})) == {"ok": [1, 2.5, "x", None, True]}


def test_check_document_counts_shared_values_each_time_they_are_reached():
    # What a YAML alias bomb constructs: ten levels of nine references to the level below.
    level: list = ["lol"]
    for _ in range(10):
        level = [level] * 9
    with pytest.raises(InvalidDocument, match="more than"):
        check_document(level)
