"""``python wsgi.py`` plus the test-only job kinds (patched the same way as wsgi.py)."""

from __future__ import annotations

import os
import sys

MODE = os.environ.get("SOCKETIO_ASYNC_MODE", "eventlet")
if MODE == "eventlet":
    import eventlet

    eventlet.monkey_patch()
elif MODE == "gevent":
    from gevent import monkey

    monkey.patch_all()
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from app import create_app  # noqa: E402
from app.serving import serve  # noqa: E402
from tests.integration import kinds_for_tests  # noqa: E402,F401

app = create_app()


@app.get("/test/socket-options")
def socket_options() -> dict[str, int]:
    """``TCP_NODELAY`` of the accepted socket whose peer port is ``?port=`` (test only)."""
    import gc
    import socket

    from flask import abort, request

    port = int(request.args["port"])
    for candidate in gc.get_objects():
        if isinstance(candidate, socket.socket):
            try:
                if candidate.getpeername()[1] == port:
                    return {"nodelay": candidate.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)}
            except (OSError, IndexError, TypeError):
                continue
    abort(404)


@app.get("/test/frame-stats")
def frame_stats() -> dict[str, float]:
    """Deliveries written straight to sockets, and through a writer's queue (test only)."""
    from prometheus_client import REGISTRY

    from app.metrics import add_deferred_counts

    add_deferred_counts()  # (as a scrape does)

    def delivered(transport: str, path: str) -> float:
        labels = {"transport": transport, "path": path}
        return REGISTRY.get_sample_value("herald_messages_delivered_total", labels) or 0.0

    return {
        "direct": delivered("socketio", "direct"),
        "queued": delivered("socketio", "queued"),
        "plain_direct": delivered("plain", "direct"),
        "plain_queued": delivered("plain", "queued"),
    }


@app.get("/test/greenlets")
def greenlets() -> dict[str, int]:
    """Live greenlets in this process (test only): what idle connections cost."""
    import gc

    from greenlet import greenlet

    return {"greenlets": sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead)}


if __name__ == "__main__":
    sys.exit(serve(app))
