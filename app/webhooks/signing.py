"""Signatures of webhook deliveries: HMAC-SHA256 over ``<timestamp>.<body>``.

Sent as ``Herald-Signature: t=<unix seconds>,v1=<hex digest>``. The timestamp is signed
with the body, so a receiver that refuses old timestamps also refuses replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time

#: Header names of a delivery.
SIGNATURE_HEADER = "Herald-Signature"
EVENT_HEADER = "Herald-Event"
DELIVERY_HEADER = "Herald-Delivery"
#: How old a signed timestamp :func:`verify` accepts by default, in seconds.
TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Herald-Signature`` value: ``t=<timestamp>,v1=<signature>``."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = TOLERANCE, now: float | None = None) -> bool:
    """What a receiver runs: the header's signature matches and its timestamp is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), fields.get("v1", ""))
