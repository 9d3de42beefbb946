"""The one message shape every protocol carries: ``{type, job_id, seq, timestamp, data}``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import ValidationFailed
from ..inputs import parse_id
from ..models.base import isoformat, utcnow

Message = dict[str, Any]


def make_message(
    type_: str,
    data: dict[str, Any],
    *,
    job_id: int | None = None,
    seq: int | None = None,
    moment: datetime | None = None,
) -> Message:
    """Build a server message; ``seq`` is None for progress ticks and notices."""
    return {
        "type": type_,
        "job_id": job_id,
        "seq": seq,
        "timestamp": isoformat(moment or utcnow()),
        "data": data,
    }


def error_message(code: str, message: str, **extra: Any) -> Message:
    """The socket error shape: ``{type: "error", code, message}`` plus the common keys."""
    msg = make_message("error", {"code": code, "message": message, **extra})
    msg["code"] = code
    msg["message"] = message
    return msg


def is_progress(message: Message) -> bool:
    """Progress ticks are coalesced and carry no seq."""
    return message.get("seq") is None and str(message.get("type", "")).endswith("progress")


def int_field(message: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    """A positive 64-bit integer field (numeric strings accepted: seed clients send ids as text)."""
    value = message.get(key)
    if value is None and not required:
        return None
    return parse_id(value, key)


def seq_field(message: dict[str, Any], key: str = "last_seq") -> int | None:
    """An optional resume position, ``0..INT64_MAX`` (integers only: seqs come from the server)."""
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{key} must be a non-negative integer", code="invalid_payload", details={"path": key})
    return parse_id(value, key, minimum=0)
