"""The one message shape every protocol carries: ``{type, job_id, seq, timestamp, data}``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
