"""Serving: what happens when a process starts taking connections (not in ``create_app``)."""

from __future__ import annotations

import logging
import resource
from typing import Any

from flask import Flask

from .extensions import socketio

log = logging.getLogger("herald")


def raise_file_limit(wanted: int) -> int:
    """Lift the open-files soft limit towards ``wanted`` (each connection is a file)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-files limit to %d (hard limit %s)", wanted, hard)
    return soft


def on_serving(app: Flask) -> None:
    """Start-up work that needs the tables: the demo login, the sweep, the heartbeat."""
    with app.app_context():
        if app.config["DEMO_USER"]:
            from .cli import ensure_demo_user

            username, password = ensure_demo_user()
            print(f"Demo login: username {username!r}, password {password!r}", flush=True)
    app.extensions["herald_runner"].start_serving()


def serve(app: Flask) -> int:
    """Run the configured async server on ``HOST``:``PORT`` until stopped."""
    max_connections = int(app.config["MAX_CONNECTIONS"])
    raise_file_limit(max_connections + 256)
    on_serving(app)
    host, port = app.config["HOST"], int(app.config["PORT"])
    mode = socketio.async_mode
    kwargs: dict[str, Any] = {}
    if mode == "eventlet":
        kwargs = {"max_size": max_connections, "log_output": False}
    elif mode == "gevent":
        from gevent.pool import Pool

        kwargs = {"spawn": Pool(max_connections), "log_output": False}
    else:
        kwargs = {"allow_unsafe_werkzeug": True}
    print(f"Herald serving on http://{host}:{port} (async mode {mode})", flush=True)
    socketio.run(app, host=host, port=port, **kwargs)
    return 0
