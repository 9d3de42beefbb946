"""Socket.IO requests past fewer WSGI layers (``python wsgi.py``, ``SOCKETIO_SHORT_PATH``).

Under eventlet a WebSocket that keeps its greenlet keeps that greenlet's whole stack while
it is idle, and every WSGI middleware object called on the way (Flask, the request log,
the stream and compression middlewares, Flask-SocketIO's) is one more level of the C
stack the greenlet saves. Here the server's entry point sends ``/socket.io/`` requests
straight to Engine.IO, doing on the way only what those layers do for such a request:
the request log (and the proxy fix) stay, the compression offer is stripped, and the
environ is copied with ``flask.app`` as Flask-SocketIO's middleware does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from ..extensions import socketio
from ..logs import RequestLog

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def short_path_entry(app: Flask) -> WSGIApp:
    """The WSGI callable to serve: ``app``, with Socket.IO requests taken before Flask."""
    strip = not app.config["WEBSOCKET_COMPRESSION"]
    handle = socketio.server.handle_request
    prefix = "/socket.io/"

    def engine_io(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if strip:
            environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        environ = environ.copy()  # as flask_socketio._SocketIOMiddleware
        environ["flask.app"] = app
        return handle(environ, start_response)  # type: ignore[no-any-return]

    engine: WSGIApp = engine_io
    if app.config["REQUEST_LOG"]:
        engine = RequestLog(engine)
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        engine = ProxyFix(engine, x_for=proxies, x_proto=proxies, x_host=proxies)  # type: ignore[arg-type]

    def entry(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(prefix):
            return engine(environ, start_response)
        return app(environ, start_response)

    return entry
