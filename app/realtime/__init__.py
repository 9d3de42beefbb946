"""Transports: Socket.IO (``events``), plain WebSocket, seed dialects — over one pipeline."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import Flask

from ..extensions import socketio
from .delivery import HeraldRedisManager, make_client_manager
from .frames import install_frame_writer
from .gevent_websocket import install_gevent_websocket
from .limits import init_limits
from .origins import socketio_origin_check
from .packets import TolerantPacket
from .pipeline import pipeline
from .queue_health import init_queue_probe


class StripWebSocketCompression:
    """WSGI middleware: hide ``permessage-deflate`` offers so it is never negotiated.

    Browsers offer compression on every WebSocket; with it, fan-out costs several times
    more CPU and memory per connection. ``WEBSOCKET_COMPRESSION=1`` turns this off.
    """

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        return self.wsgi_app(environ, start_response)


def forget_event_requests(socketio_ext: Any) -> None:
    """Drop the Flask request an event leaves in its connection's stored environ.

    Flask-SocketIO runs each event in a request context built from the environ
    python-socketio keeps for the session, and werkzeug's ``Request`` stores itself in that
    environ (``werkzeug.request``): so every idle connection kept its last event's request —
    the parsed query string and headers, the event's arguments (the connect's ``auth``, with
    its token). The next event builds its own.
    """
    stock = socketio_ext._handle_event

    def handle_event(handler: Any, message: Any, namespace: Any, sid: str, *args: Any) -> Any:
        try:
            return stock(handler, message, namespace, sid, *args)
        finally:
            environ = socketio_ext.server.get_environ(sid, namespace=namespace)
            if environ:
                environ.pop("werkzeug.request", None)

    socketio_ext._handle_event = handle_event


def init_realtime(app: Flask) -> None:
    """Bind Flask-SocketIO with Herald's client manager, limits and handlers."""
    from . import events  # (importing it registers the Socket.IO handlers)
    from .subscriptions import catch_up

    limit = int(app.config["SOCKET_MESSAGE_LIMIT"])
    TolerantPacket.max_event_bytes = limit
    options: dict[str, Any] = {
        "client_manager": make_client_manager(
            app.config["MESSAGE_QUEUE_URL"],
            app.config["MESSAGE_QUEUE_CHANNEL"],
            write_only=app.config["ROLE"] == "worker",
        ),
        "serializer": TolerantPacket,
        "cors_allowed_origins": socketio_origin_check(app.config["CORS_ALLOWED_ORIGINS"]),
        # Engine.IO's own cap stays well above ours so that an oversized event gets an
        # error message instead of a dropped connection.
        "max_http_buffer_size": max(limit * 16, 1024 * 1024),
        "ping_interval": int(app.config["PING_INTERVAL"]),
        "ping_timeout": int(app.config["PING_TIMEOUT"]),
        "logger": False,
        "engineio_logger": False,
    }
    if app.config["SOCKETIO_ASYNC_MODE"]:
        options["async_mode"] = app.config["SOCKETIO_ASYNC_MODE"]
    manager = options["client_manager"]
    if isinstance(manager, HeraldRedisManager):
        manager.on_recovered = partial(catch_up, app)
    socketio.init_app(app, **options)
    events.install_connection_handlers(socketio.server)
    events.greet_after_connect(socketio.server)
    if not getattr(socketio, "herald_forgets_requests", False):
        forget_event_requests(socketio)
        socketio.herald_forgets_requests = True  # type: ignore[attr-defined]
    install_frame_writer(socketio.server, queue_limit=int(app.config["SOCKETIO_SEND_QUEUE"]))
    if socketio.server.eio.async_mode == "eventlet":
        from .eventlet_websocket import install_eventlet_websocket  # imports eventlet's modules

        install_eventlet_websocket(socketio.server)
    install_gevent_websocket(socketio.server)
    init_limits(app)
    init_queue_probe(app)
    pipeline.init_app(app)
    from .dialects import api_tests

    api_tests.init_app(app)
    if not app.config["WEBSOCKET_COMPRESSION"]:
        app.wsgi_app = StripWebSocketCompression(app.wsgi_app)  # type: ignore[method-assign]
