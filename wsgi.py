"""Entry point: ``python wsgi.py`` serves with eventlet; gunicorn imports ``app``.

Monkey-patching happens only when this file serves (``python wsgi.py``); gunicorn's
eventlet worker patches by itself, and ``flask --app wsgi db upgrade`` runs unpatched.
``eventlet.monkey_patch()`` also makes psycopg2 (PostgreSQL) yield while it waits; gevent's
``patch_all()`` does not, so psycogreen's wait callback is installed with it.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and os.environ.get("SOCKETIO_ASYNC_MODE", "eventlet") == "eventlet":
    import eventlet

    eventlet.monkey_patch()
elif __name__ == "__main__" and os.environ.get("SOCKETIO_ASYNC_MODE") == "gevent":
    from gevent import monkey

    monkey.patch_all()
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()

from app import create_app  # noqa: E402
from app.cli import runs_client_command  # noqa: E402
from app.serving import serve  # noqa: E402

# `flask --app wsgi watch …` only follows a job on another server: it needs none of this
# server's secrets, nor eventlet (the app is built only for flask to find the command).
app = create_app({"CLIENT_ONLY": True, "SOCKETIO_ASYNC_MODE": "threading"} if runs_client_command() else None)

if __name__ == "__main__":
    sys.exit(serve(app))
