"""Gunicorn settings for ``gunicorn -k eventlet -w 1 wsgi:app`` (gunicorn pinned to 25.3.0)."""

import os

#: Loopback unless ``HOST`` says otherwise (the Docker image sets ``HOST=0.0.0.0``).
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
worker_class = "eventlet"
workers = 1
#: Open connections per worker; matches MAX_CONNECTIONS for ``python wsgi.py``.
worker_connections = int(os.environ.get("MAX_CONNECTIONS", "10000"))
#: Accept queue (the kernel caps it at somaxconn): a reconnect storm is not dropped at SYN.
backlog = max(128, min(worker_connections, 4096))
timeout = 60
graceful_timeout = 10


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    """With ``-k gevent``, make psycopg2 yield to gevent (the eventlet worker's patch does)."""
    if "gevent" in type(worker).__module__:
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Start-up work that needs tables runs once the worker serves."""
    from app.serving import on_serving, raise_file_limit, share_gunicorn_eventlet_pool

    raise_file_limit(worker_connections + 256)
    if "eventlet" in type(worker).__module__:
        share_gunicorn_eventlet_pool(worker.wsgi)  # idle WebSockets without a greenlet
    on_serving(worker.wsgi)
