"""One origin policy for every socket handshake (cross-site WebSocket hijacking).

A request with no ``Origin`` (a program, not a browser) is served; a browser origin is
served when it is the server's own or listed in ``CORS_ALLOWED_ORIGINS`` (``*`` lists all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def own_origin(environ: dict[str, Any]) -> str:
    """``scheme://host`` of the request as the client addressed it.

    ``X-Forwarded-*`` headers are believed only through ``TRUSTED_PROXIES`` (werkzeug's
    ``ProxyFix`` rewrites the environ before this runs); a client cannot forge them.
    """
    return f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"


def origin_allowed(origin: str | None, environ: dict[str, Any], allowed: Iterable[str]) -> bool:
    """Whether a handshake with this ``Origin`` header may proceed."""
    if not origin:
        return True
    listed = list(allowed)
    return "*" in listed or origin in listed or origin == own_origin(environ)


def socketio_origin_check(allowed: Iterable[str]) -> Callable[[str | None, dict[str, Any]], bool]:
    """The policy in the callable form python-engineio accepts for ``cors_allowed_origins``."""
    listed = list(allowed)
    return lambda origin, environ: origin_allowed(origin, environ, listed)
