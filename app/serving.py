"""Serving: what happens when a process starts taking connections (not in ``create_app``)."""

from __future__ import annotations

import errno
import gc
import logging
import resource
import signal
import sys
from typing import Any

from flask import Flask

from .extensions import socketio

log = logging.getLogger("herald")

#: Pending connections the kernel queues before accept (it caps this at somaxconn).
#: eventlet.listen's default of 50 drops SYNs in a reconnect storm: clients then wait
#: for TCP's 1 s, 3 s, 7 s retransmits instead of being accepted at once.
MAX_LISTEN_BACKLOG = 4096


def listen_backlog(max_connections: int) -> int:
    """The accept queue to ask for: every client of a storm, up to the kernel's cap."""
    return max(128, min(max_connections, MAX_LISTEN_BACKLOG))


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


def share_gunicorn_eventlet_pool(app: Flask) -> None:
    """Under gunicorn's eventlet worker: one pool of ``worker_connections`` slots for the
    requests and for the WebSockets the hub serves without their greenlet (hub_reader).

    gunicorn 25.3 keeps each listener's pool inside ``_eventlet_serve``, out of reach: this
    replaces that function (called by the worker's ``run``, after ``post_worker_init``)
    with the same accept loop over a pool the hub reader shares; a hub-served connection
    keeps its slot until it closes, so ``worker_connections`` still caps every connection.
    """
    if not app.config["SOCKETIO_HUB_READER"]:
        return
    import eventlet
    from gunicorn.workers import geventlet

    from .realtime.hub_reader import close_all, register_connection_slots

    pools: list[Any] = []

    def serve(sock: Any, handle: Any, concurrency: int) -> None:
        if not pools:
            pools.append(eventlet.GreenPool(concurrency))
            register_connection_slots(pools[0].sem)
        pool = pools[0]  # every listener of the worker: one cap
        server_gt = eventlet.greenthread.getcurrent()
        while True:
            try:
                conn, addr = sock.accept()
                thread = pool.spawn(handle, conn, addr)
                thread.link(geventlet._eventlet_stop, server_gt, conn)
                conn, addr, thread = None, None, None
            except eventlet.StopServe:
                sock.close()
                # The WebSockets the hub serves first (their disconnect handlers run):
                # waitall() waits for the request greenlets, and gunicorn kills this one
                # once its graceful timeout has passed.
                register_connection_slots(None)
                close_all()
                pool.waitall()
                return

    geventlet._eventlet_serve = serve


#: Net allocations of tracked objects between two young-generation collections (700 by default).
GC_YOUNG_THRESHOLD = 7000


def on_serving(app: Flask) -> None:
    """Start-up work that needs the tables: the demo login, the sweep, the heartbeat."""
    from .realtime.queue_health import log_queue_at_start

    log_queue_at_start(app)
    with app.app_context():
        if app.config["DEMO_USER"]:
            from .cli import ensure_demo_user

            username, password = ensure_demo_user()
            print(f"Demo login: username {username!r}, password {password!r}", flush=True)
    from .data.uploads import reconcile_interrupted_uploads
    from .jobs.kinds.data_import import clean_interrupted_imports

    def settle_uploads() -> None:
        """What jobs settled ``interrupted`` left behind: uploads and imports."""
        settled = reconcile_interrupted_uploads()
        if settled:
            log.warning("settled %d upload(s) interrupted by a stopped server", settled)
        removed = clean_interrupted_imports()
        if removed:
            log.warning("removed %d dataset(s) left empty by imports a stopped server interrupted", removed)

    runner = app.extensions["herald_runner"]
    # At start (jobs settled before this process came up) and after every sweep that
    # settled jobs (a peer's lease expired while this process serves).
    runner.after_settle(settle_uploads)
    # Finished webhook deliveries are trimmed on the history's schedule (app/webhooks/retention.py).
    runner.also_trim(app.extensions["herald_webhooks"].trim)
    runner.start_serving()
    app.extensions["herald_webhooks"].start()  # job events to webhooks (app/webhooks/dispatcher.py)
    from .jobs.producers import start_expiry_sweep

    start_expiry_sweep(app)  # external jobs whose producer vanished fail when its token expires
    with app.app_context():
        settle_uploads()
    # A full garbage collection walks every tracked object and holds the event loop while
    # it does: with the app's start-up objects (modules, mappings) frozen out of it, the
    # collections an import's allocations trigger took ~50 ms less each (ping p99 during a
    # 40,000-row XLSX import: 110-130 ms before, about 50 ms after).
    gc.freeze()
    # Each connection keeps ~100 tracked objects for its life: at Python's default (a young
    # collection per 700 net allocations) a connect storm ran the young and middle
    # collections every few connects, each promoting what had to stay anyway. At 7,000 a
    # Socket.IO connect costs ~6 % less CPU (5,000 clients, same run); a young collection
    # then takes up to ~10 ms, a tenth of what a full one takes with 5,000 connections.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


#: The signals that end serving cleanly (Ctrl+C, and what ``kill``, systemd and Docker send).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals() -> list[str]:
    """Make SIGINT and SIGTERM stop the server loop (``KeyboardInterrupt`` in the main
    greenlet); returns the list the received signal's name is put in.

    The handler runs in whichever greenlet the signal finds running: in the main greenlet
    or the hub the exception ends the server loop, but raised in a job's greenlet it would
    only kill that job, so there it is handed to the main greenlet through the hub. A
    signal the process was started ignoring (a background job of a script) stays ignored.
    """
    received: list[str] = []

    def handler(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        throw_into_main = _main_greenlet_thrower()
        if throw_into_main is None:
            raise KeyboardInterrupt
        throw_into_main()

    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)
    return received


def _main_greenlet_thrower() -> Any:
    """None when raising here reaches the server loop (no greenlets, the main greenlet,
    eventlet's hub); otherwise a callable that has the hub throw into the main greenlet."""
    try:
        import greenlet
    except ImportError:
        return None
    current = greenlet.getcurrent()
    if current.parent is None:  # the main greenlet (or no greenlets in use)
        return None
    mode = socketio.async_mode
    if mode == "eventlet":
        from eventlet.hubs import get_hub

        hub = get_hub()
        if current is hub.greenlet:
            return None
        main = hub.greenlet.parent
        return lambda: hub.schedule_call_global(0, main.throw, KeyboardInterrupt())
    if mode == "gevent":
        import gevent

        # Even in the hub: gevent's hub prints a traceback for an exception raised in it.
        gevent_hub = gevent.get_hub()
        main = gevent_hub.parent
        return lambda: gevent_hub.loop.run_callback(main.throw, KeyboardInterrupt())
    return None


def serve(app: Flask) -> int:
    """Run the configured async server on ``HOST``:``PORT`` until stopped.

    Ctrl+C or SIGTERM stop it cleanly: a goodbye line, exit status 0 (so ``make run``
    ends without ``make: *** Error``). Jobs still running are settled ``interrupted`` by
    the next start, as after any stop.
    """
    received = stop_on_signals()
    try:
        _serve(app)
    except KeyboardInterrupt:
        pass
    how = f" ({received[-1]})" if received else ""
    if app.config["LOG_FORMAT"] == "json":
        log.info("Herald stopped%s. Goodbye.", how)
    else:
        print(f"Herald stopped{how}. Goodbye.", flush=True)
    return 0


def _serve(app: Flask) -> None:
    """The server loop of the configured async mode; returns when it stops."""
    max_connections = int(app.config["MAX_CONNECTIONS"])
    raise_file_limit(max_connections + 256)
    host, port = app.config["HOST"], int(app.config["PORT"])
    mode = socketio.async_mode
    backlog = listen_backlog(max_connections)
    # The port first: a second server on a taken port stops here, saying so, before it
    # starts any background work (no SO_REUSEPORT: two servers must not share a port).
    listener = _listen(mode, host, port, backlog) if mode in ("eventlet", "gevent") else None
    on_serving(app)
    banner = f"Herald serving on http://{host}:{port} (async mode {mode})"
    if app.config["LOG_FORMAT"] == "json":
        log.info(banner)  # every line of a JSON log is JSON
    else:
        print(banner, flush=True)
    if mode == "eventlet":
        # What socketio.run does for eventlet, with a listen backlog of our choosing.
        import eventlet
        import eventlet.wsgi

        from .realtime.hub_reader import close_all, register_connection_slots
        from .realtime.upgrade import UpgradeFirstProtocol

        # One pool of MAX_CONNECTIONS slots for requests and for WebSockets the hub serves
        # without their greenlet (each keeps a slot until it closes).
        pool = eventlet.GreenPool(max_connections)
        if app.config["SOCKETIO_HUB_READER"]:
            register_connection_slots(pool.sem)
        try:
            eventlet.wsgi.server(
                listener,
                app,
                custom_pool=pool,
                protocol=UpgradeFirstProtocol,  # WebSocket upgrades skip its HTTP parsing
                log_output=False,
                log=logging.getLogger("eventlet.wsgi"),
            )
        finally:
            register_connection_slots(None)
            close_all()  # the WebSockets the hub served (eventlet.wsgi ended the others)
        return
    if mode == "gevent":
        # What socketio.run does for gevent, with our listener (backlog, no Nagle).
        from gevent.pool import Pool
        from gevent.pywsgi import WSGIServer

        WSGIServer(
            listener, app, spawn=Pool(max_connections), log=None, error_log=logging.getLogger("gevent.pywsgi")
        ).serve_forever()
        return
    socketio.run(app, host=host, port=port, allow_unsafe_werkzeug=True)


def _listen(mode: str, host: str, port: int, backlog: int) -> Any:
    """The listening socket (green), without Nagle; a port that cannot be had ends the
    start with one line (``SystemExit``), not a traceback."""
    if mode == "eventlet":
        from eventlet.green import socket as green_socket
    else:
        from gevent import socket as green_socket  # type: ignore[no-redef]
    try:
        family, _, _, _, address = green_socket.getaddrinfo(host, port)[0]
        listener = green_socket.socket(family, green_socket.SOCK_STREAM)
        listener.setsockopt(green_socket.SOL_SOCKET, green_socket.SO_REUSEADDR, 1)  # a restart may follow a kill
        listener.bind(address)
        listener.listen(backlog)
    except OSError as exc:
        message = f"Herald cannot listen on {host}:{port}: {exc.strerror or exc}"
        if exc.errno == errno.EADDRINUSE:
            message += " (is another server running there? set PORT to use another port)"
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    without_nagle(listener)
    return listener


def without_nagle(listener: Any) -> None:
    """``TCP_NODELAY`` on the listener, which every accepted socket inherits (Linux).

    A Socket.IO ack or event is one or two small writes: with Nagle's algorithm a second
    small write waits for the peer's delayed ACK (~40 ms on loopback, more on a network).
    Gunicorn sets it on its own listeners.
    """
    import socket

    if listener.family in (socket.AF_INET, socket.AF_INET6):
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
