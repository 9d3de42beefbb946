"""Hypothesis strategies for socket messages, built from the server's own schemas
(``app.realtime.commands``): what fits, what nearly fits, and any JSON at all."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from app.inputs import INT64_MAX

#: Any JSON a client might send, including what JSON cannot carry safely (NaN, huge integers).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
#: Values that break an id or seq field in interesting ways.
HOSTILE_NUMBERS = st.sampled_from(
    [0, -1, 1.5, True, INT64_MAX + 1, 2**64, -(2**63) - 1, "9" * 30, str(INT64_MAX + 1), "-5", " 7", "", "0x10"]
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that fit ``schema`` (schemathesis's JSON Schema engine, pinned with it)."""
    import jsonschema_rs
    from schemathesis.generation.jsonschema.builder import build

    return build(schema, draft=jsonschema_rs.Draft202012, formats={})


def broken(schema: dict[str, Any], replacements: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """A valid value with one field replaced (``replacements``: hostile numbers and any JSON
    unless told) or removed, or any JSON."""

    def mutate(value: Any, key: str, replacement: Any, remove: bool) -> Any:
        if not isinstance(value, dict):
            return replacement
        value = dict(value)
        if remove:
            value.pop(key, None)
        else:
            value[key] = replacement
        return value

    keys = sorted(schema.get("properties", {})) or ["x"]
    values = HOSTILE_NUMBERS | JSON_VALUES if replacements is None else replacements
    return st.one_of(
        st.builds(mutate, from_schema(schema), st.sampled_from(keys), values, st.booleans()),
        JSON_VALUES,
    )
