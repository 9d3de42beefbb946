"""Herald: long jobs with live progress over Socket.IO, plain WebSocket and REST."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask.sessions import SessionInterface

from .config import INSTANCE_DIR, load_config
from .errors import register_page_errors
from .extensions import db, jwt, migrate, sock
from .logs import RequestLog, configure_logging

#: Where Flask-SocketIO's middleware serves Engine.IO (its default ``socketio_path``).
SOCKETIO_PATH = "/socket.io/"


class NoCookieSession(SessionInterface):
    """Herald keeps nothing in Flask's cookie session: tokens authenticate every request and
    socket. Opening it anyway built a signing serializer for every request and for every
    Socket.IO connect (Flask-SocketIO opens it per connection); ``session`` is a read-only
    empty session instead."""

    def open_session(self, app: Flask, request: Any) -> None:
        return None  # Flask then uses its null session

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


class HeraldFlask(Flask):
    """Flask without URL routing for Socket.IO events.

    Flask-SocketIO runs each event in a request context built from the connection's
    handshake environ (``/socket.io/``), which no route matches: binding a URL adapter and
    raising a ``NotFound`` for every connect and every event was a tenth of a reconnect
    storm's CPU. Requests to ``/socket.io/`` never reach Flask's routing (Engine.IO's
    middleware answers them), so only events take this path.
    """

    def create_url_adapter(self, request: Any) -> Any:
        if request is not None and request.environ.get("PATH_INFO", "").startswith(SOCKETIO_PATH):
            return None
        return super().create_url_adapter(request)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: config, extensions, blueprints, realtime, CLI. Nothing starts here."""
    from .api.schema import HeraldJSONProvider, HeraldRequest, IdConverter

    app = HeraldFlask(
        __name__, instance_path=str(INSTANCE_DIR), static_folder="../static", template_folder="../templates"
    )
    app.config.update(load_config(config))
    app.request_class = HeraldRequest
    app.session_interface = NoCookieSession()
    app.json = HeraldJSONProvider(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters["id"] = IdConverter
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])

    from . import models  # noqa: F401  (every table known to migrations)
    from .database import init_database

    db.init_app(app)
    migrate.init_app(app, db, directory=str(INSTANCE_DIR.parent / "migrations"))
    jwt.init_app(app)
    from .auth.cache import token_cache

    token_cache.configure(float(app.config["TOKEN_CACHE_SECONDS"]), int(app.config["TOKEN_CACHE_SIZE"]))
    token_cache.clear()
    sock.init_app(app)
    init_database(app)

    from .api import bp as api_bp
    from .api.errors import register_error_handlers
    from .api.meta import health, metrics, ready
    from .auth import bp as auth_bp
    from .web import bp as web_bp

    app.register_blueprint(auth_bp, url_prefix="/api/auth")
    app.register_blueprint(api_bp, url_prefix="/api")
    app.register_blueprint(web_bp)
    app.add_url_rule("/health", "health", health)
    app.add_url_rule("/ready", "ready", ready)
    app.add_url_rule("/metrics", "metrics", metrics)
    register_error_handlers(app)
    register_page_errors(app)

    from .jobs import kinds  # noqa: F401  (registers the job kinds)
    from .jobs.plugins import load_job_modules

    load_job_modules(app.config["HERALD_JOB_MODULES"])
    from .jobs.runner import runner
    from .observability import install_state_collector
    from .realtime import init_realtime

    runner.init_app(app)
    from .webhooks.dispatcher import dispatcher

    dispatcher.init_app(app)
    init_realtime(app)
    install_state_collector()

    from .realtime.sse import init_sse
    from .realtime.ws import init_ws

    init_ws(app)
    init_sse(app)

    from .cli import register_cli

    register_cli(app)
    if app.config["REQUEST_LOG"]:
        app.wsgi_app = RequestLog(app.wsgi_app)  # type: ignore[method-assign]
        # Werkzeug's own line per request (threading mode) would repeat ours.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)  # type: ignore[method-assign]
    return app
