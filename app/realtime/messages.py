"""The one message shape every protocol carries: ``{type, job_id, seq, timestamp, data}``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ..models.base import isoformat

Message = dict[str, Any]

#: ``(second, "YYYY-MM-DDTHH:MM:SS")`` of the last timestamp made by :func:`now_timestamp`.
_second_prefix: tuple[int, str] = (-1, "")


def now_timestamp() -> str:
    """Now as ``isoformat(utcnow())`` writes it, at a fraction of its cost: the date and
    time are formatted once a second, only the milliseconds per call (every tick needs one)."""
    global _second_prefix
    now = time.time()
    second = int(now)
    cached_second, prefix = _second_prefix
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_prefix = (second, prefix)
    return f"{prefix}.{int((now - second) * 1000):03d}Z"


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
        "timestamp": now_timestamp() if moment is None else isoformat(moment),
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
