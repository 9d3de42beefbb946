"""Bounds on what clients send, shared by REST, Socket.IO and plain WebSocket.

Every id, seq and offset a client names must fit the database's signed 64-bit integers,
and every JSON (or YAML) document must be shallow and small enough to walk safely:
without these checks a number like 2^63 or a body nested 10,000 deep reaches the driver
or the recursion limit and becomes a 500. Parsing here fails with a clear reason instead.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from jsonschema import Draft202012Validator, validators

from .errors import ValidationFailed

#: Largest id, seq or offset (SQLite INTEGER and PostgreSQL BIGINT are signed 64-bit).
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
#: Deepest nesting of objects and arrays accepted in a client document.
MAX_DEPTH = 64
#: Most values (after YAML aliases are expanded) in one client document.
MAX_NODES = 200_000
#: Ids a client names itself (``client_id``, ``upload_id``): rooms and file records are
#: keyed by them, so the one rule lives here, in words for messages ...
CLIENT_ID_RULE = "[A-Za-z0-9_-]{1,64}"
#: ... as a JSON Schema ``pattern`` (REST bodies, job params) ...
CLIENT_ID_REGEX = f"^{CLIENT_ID_RULE}$"
#: ... and compiled, anchored at the very end (``$`` would let a trailing newline in).
CLIENT_ID_PATTERN = re.compile(rf"^{CLIENT_ID_RULE}\Z")


def is_integer(value: Any) -> bool:
    """A JSON integer: ``2`` but neither ``2.0`` nor ``true``."""
    return isinstance(value, int) and not isinstance(value, bool)


#: JSON Schema 2020-12 for everything clients send (REST bodies, job parameters, socket
#: messages), with one change: an ``integer`` is an integer. The standard counts ``2.0``
#: as one, so ``{"steps": 2.0}`` passed and the job then failed on ``range(2.0)``.
SchemaValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda _checker, value: is_integer(value)),
)


class InvalidDocument(ValueError):
    """A JSON/YAML document that is malformed, too deep, too large or out of range."""


def parse_id(value: Any, name: str, *, minimum: int = 1) -> int:
    """An integer in ``minimum..INT64_MAX`` (numeric strings accepted: seed clients send ids as text)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationFailed(f"{name} must be an integer", code="invalid_payload", details={"path": name})
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
            raise ValidationFailed(f"{name} must be an integer", code="invalid_payload", details={"path": name})
        value = int(text)
    if not minimum <= value <= INT64_MAX:
        raise ValidationFailed(
            f"{name} must be between {minimum} and {INT64_MAX}", code="invalid_payload", details={"path": name}
        )
    return value


def is_client_id(value: Any) -> bool:
    """True when ``value`` is a string that follows :data:`CLIENT_ID_RULE`."""
    return isinstance(value, str) and CLIENT_ID_PATTERN.match(value) is not None


def check_client_id(value: Any, name: str = "client_id") -> str:
    """``value`` when it is a valid client-named id; else ``ValidationFailed`` at ``name``."""
    if not is_client_id(value):
        raise ValidationFailed(f"{name} must match {CLIENT_ID_RULE}", details={"path": name})
    return str(value)


def check_document(document: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """Return ``document`` if it is shallow, small, its integers fit 64 bits and its floats
    are finite; else raise.

    The walk is iterative and counts shared containers each time they are reached, so a
    YAML alias bomb is stopped by ``max_nodes`` before anything expands it.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise InvalidDocument(f"the document has more than {max_nodes} values")
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
                raise InvalidDocument("a number is outside the 64-bit integer range")
            if isinstance(value, float) and not math.isfinite(value):  # YAML's .inf and .nan
                raise InvalidDocument(NOT_FINITE)
            continue
        if depth > max_depth:
            raise InvalidDocument(f"the document is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
    return document


def _refuse_constant(name: str) -> Any:
    raise InvalidDocument(f"{name} is not a JSON number")


#: Why a number that is no finite double is refused: stored, it would come back as the
#: bare ``Infinity`` or ``NaN`` that no JSON parser reads.
NOT_FINITE = "a number is outside the range of a double (JSON has no Infinity or NaN)"


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise InvalidDocument(NOT_FINITE)
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:  # 2^63 has 19 digits: anything longer cannot fit
        raise InvalidDocument("a number is outside the 64-bit integer range")
    return int(text)


def load_json(text: str | bytes) -> Any:
    """Parse client JSON: no NaN/Infinity (nor numbers past a double, like ``1e400``),
    integers within 64 bits, depth and size bounded."""
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise InvalidDocument(f"the document is nested deeper than {MAX_DEPTH} levels") from None
    except InvalidDocument:
        raise
    except ValueError as exc:  # JSONDecodeError, bad UTF-8
        raise InvalidDocument(str(exc)) from None
    return check_document(document)
