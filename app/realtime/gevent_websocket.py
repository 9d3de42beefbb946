"""Engine.IO's WebSocket under gevent: closed and size-limited as under eventlet.

Under gevent python-engineio serves WebSockets with simple-websocket, which works on a
*duplicate* of the connection's socket. Two things follow that eventlet does not share:

* closing the duplicate leaves the TCP connection open: a client that closes the
  WebSocket gets the closing handshake but waits for the server's FIN until its own
  timeout (10 s for most clients), and one the server drops never hears of it;
* simple-websocket is not told Engine.IO's ``max_http_buffer_size``, so an oversized
  frame is read whole, then Engine.IO gives up on the connection without a close frame.

The wrapper below gives simple-websocket the size limit (it answers with close code 1009
like eventlet does) and ends the connection once the Engine.IO session ends
(``end_connection``, which the plain WebSocket route uses too).
"""

from __future__ import annotations

import socket
from typing import Any


def install_gevent_websocket(server: Any) -> None:
    """Under gevent, swap Engine.IO's WebSocket class for one that closes and limits."""
    eio = server.eio
    if eio.async_mode != "gevent":
        return
    from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI

    base = eio._async["websocket"]
    if getattr(base, "herald_closes_connection", False) or not issubclass(base, SimpleWebSocketWSGI):
        # Already installed, or gevent-websocket (not simple-websocket) is in use.
        return

    class ClosingWebSocketWSGI(base):  # type: ignore[misc, valid-type]
        herald_closes_connection = True

        def __init__(self, handler: Any, engineio_server: Any) -> None:
            super().__init__(handler, engineio_server)
            self.server_args["max_message_size"] = int(engineio_server.max_http_buffer_size)

        def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
            try:
                return super().__call__(environ, start_response)
            finally:
                end_connection(environ)

    eio._async["websocket"] = ClosingWebSocketWSGI


def end_connection(environ: dict[str, Any]) -> None:
    """End the TCP connection under a gevent WSGI request whose WebSocket session is over.

    The real socket is shut down (simple-websocket worked on a duplicate, whose close
    leaves the connection open), and pywsgi's reader is closed: pywsgi would otherwise
    keep the connection alive and read what the client sends after the session (its
    reply to our close frame) as the next HTTP request — a 400 written to a closed
    socket, logged with a traceback.
    """
    rfile = environ.get("wsgi.input")
    if rfile is not None and not hasattr(rfile, "raw") and hasattr(rfile, "rfile"):
        rfile = rfile.rfile  # gevent's Input wraps the handler's reader
    raw = getattr(getattr(rfile, "raw", None), "_sock", None)
    if raw is not None:
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone
    if rfile is not None and hasattr(rfile, "close"):
        try:
            rfile.close()  # pywsgi sees it closed and reads no further request
        except OSError:
            pass
