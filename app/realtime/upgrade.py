"""WebSocket upgrade requests read without eventlet.wsgi's HTTP machinery.

A new WebSocket costs one HTTP request, and under eventlet.wsgi a third of a Socket.IO
connect's CPU went into that request's plumbing before the app saw it: two buffered file
objects per connection, the request line read through one of them, the headers parsed by
``email.feedparser``, the environ built from the parsed message, the response machinery.
:class:`UpgradeFirstProtocol` looks at (peeks, without consuming) the first bytes of each
new connection. When they hold a whole ``GET`` of the Socket.IO path asking for a
WebSocket upgrade, with no body, it reads them, builds the environ eventlet.wsgi would
build (same keys, same header rules) and calls the app with it: the app, its middlewares
(the request log, the origin checks) and Engine.IO see the same request as before.
Everything else — other paths (their responses may stream), plain HTTP, a request head
cut across packets, anything unusual in it — takes eventlet.wsgi's own path, bytes
untouched.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from eventlet import Timeout, wsgi

from .. import SOCKETIO_PATH
from .hub_reader import LET_GO, RAW_SOCKET

log = logging.getLogger(__name__)

#: The most the first look takes; a longer request head takes eventlet.wsgi's path
#: (which applies its own limits and errors).
HEAD_LIMIT = 8192
#: Most header lines taken here (``http.client``'s limit; more: eventlet.wsgi decides).
MAX_HEADERS = 100

#: A request target without spaces or control characters, and header names that are
#: RFC 9110 tokens: anything else goes to eventlet.wsgi, which parses it its own way.
_TARGET = re.compile(r"/[\x21-\x7e]*\Z")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_GET_SOCKETIO = f"GET {SOCKETIO_PATH}".encode("ascii")
#: What ends an upgrade the client abandoned (reset, timed out): no error log, no 500.
_CLIENT_GONE = (OSError, TimeoutError, Timeout)


class UpgradeFirstProtocol(wsgi.HttpProtocol):
    """eventlet.wsgi's protocol, with WebSocket upgrades served without its parsing."""

    def __init__(self, conn_state: list[Any], server: Any) -> None:
        if serve_upgrade(conn_state, server):
            return
        super().__init__(conn_state, server)


def serve_upgrade(conn_state: list[Any], server: Any) -> bool:
    """Serve the connection's request if it is a plain WebSocket upgrade; False (nothing
    read) when eventlet.wsgi must serve it."""
    address, sock = conn_state[0], conn_state[1]
    if type(getattr(sock, "fd", None)) is not RAW_SOCKET:
        return False  # TLS (no peeking into it) or a martian
    try:
        head = sock.recv(HEAD_LIMIT, socket.MSG_PEEK)
    except OSError:
        return False  # eventlet.wsgi meets the same error and handles it
    request = _parse(head)
    if request is None:
        return False
    taken: list[bool] = []
    try:
        environ = _environ(request, server, sock, address, conn_state)
        environ[LET_GO] = taken
        _consume(sock, request.size)
        conn_state[2] = wsgi.STATE_REQUEST  # as eventlet.wsgi marks a request being served
        _respond(server.app, environ, sock)
    except OSError as exc:  # the client went away mid-handshake: nothing to answer
        log.debug("a WebSocket upgrade ended early: %s", exc)
    finally:
        if taken:  # the hub reader serves it now: eventlet.wsgi's clean-up must not close it
            conn_state[1] = _LET_GO
        else:
            try:
                sock.close()  # what eventlet.wsgi does after an upgrade (it never keeps one alive)
            except OSError:
                pass
    return True


class _LetGo:
    """What eventlet.wsgi shuts down and closes when the request's greenlet ends, in place
    of a socket the hub reader took."""

    def shutdown(self, _how: int) -> None:
        pass

    def close(self) -> None:
        pass


_LET_GO = _LetGo()


class _Request(NamedTuple):
    target: str
    headers: list[tuple[str, str]]
    #: Bytes of the request head (what is read once the app is called).
    size: int


def _parse(head: bytes) -> _Request | None:
    """The request in ``head`` if it is a whole, plain WebSocket upgrade ``GET``."""
    end = head.find(b"\r\n\r\n")
    if end < 0 or not head.startswith(_GET_SOCKETIO):
        return None
    try:
        text = head[:end].decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        return None
    request_line, *lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or len(lines) > MAX_HEADERS:
        return None
    target = parts[1]
    if not _TARGET.match(target) or target.startswith("//"):
        return None
    headers: list[tuple[str, str]] = []
    upgrade = versioned = False
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name) or "\n" in line or "\r" in line:
            return None  # folded, malformed or unusual: eventlet.wsgi decides
        value = value.strip(" \t")
        lowered = name.lower()
        if lowered in ("content-length", "transfer-encoding", "expect"):
            return None  # a body, or a promise of one: not an upgrade we serve here
        if lowered == "upgrade" and value.lower() == "websocket":
            upgrade = True
        elif lowered == "sec-websocket-version":
            versioned = True  # (without: a hixie-76 handshake, which reads a body)
        headers.append((name, value))
    if not upgrade or not versioned:
        return None
    return _Request(target, headers, end + 4)


def _environ(request: _Request, server: Any, sock: Any, address: Any, conn_state: list[Any]) -> dict[str, Any]:
    """What ``eventlet.wsgi.HttpProtocol.get_environ`` builds for this request."""
    env = server.get_environ()
    env["REQUEST_METHOD"] = "GET"
    env["SCRIPT_NAME"] = ""
    path, question, query = request.target.partition("?")
    env["RAW_PATH_INFO"] = path
    env["PATH_INFO"] = urllib.parse.unquote(path, encoding="latin1")
    if question:
        env["QUERY_STRING"] = query
    env["CONTENT_TYPE"] = "text/plain"  # what email's parser reports for a request without one
    env["SERVER_PROTOCOL"] = "HTTP/1.0"  # as eventlet.wsgi reports it
    server_host, server_port = wsgi.addr_to_host_port(sock.getsockname())
    env["SERVER_NAME"] = server_host
    env["SERVER_PORT"] = str(server_port)
    client_host, client_port = wsgi.addr_to_host_port(address)
    env["REMOTE_ADDR"] = client_host
    env["REMOTE_PORT"] = str(client_port)
    env["GATEWAY_INTERFACE"] = "CGI/1.1"
    env["headers_raw"] = tuple(request.headers)
    content_type_seen = False
    for name, value in request.headers:
        if "_" in name:
            continue  # dropped, as eventlet.wsgi drops them (one name must not pass as another)
        key = "HTTP_" + name.replace("-", "_").upper()
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            if key == "HTTP_CONTENT_TYPE" and not content_type_seen:
                env["CONTENT_TYPE"] = value  # the first, as email's parser gives it
                content_type_seen = True
            continue
        env[key] = env[key] + "," + value if key in env else value
    env["wsgi.input"] = env["eventlet.input"] = wsgi.Input(io.BytesIO(b""), 0, sock)
    env["eventlet.posthooks"] = []

    def set_idle() -> None:  # WebSocketWSGI's way to say the request now only waits
        conn_state[2] = wsgi.STATE_IDLE

    env["eventlet.set_idle"] = set_idle
    return env


def _consume(sock: Any, size: int) -> None:
    """Read the request head that was peeked at (it is in the socket's buffer)."""
    while size > 0:
        chunk = sock.recv(size)
        if not chunk:
            return
        size -= len(chunk)


def _respond(app: Callable[..., Iterable[bytes]], environ: dict[str, Any], sock: Any) -> None:
    """Run the app; write its response unless it took the socket over (the 101 and the
    WebSocket are written by the WebSocket handler itself)."""
    wsgi.WSGI_LOCAL.already_handled = False
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return lambda _data: None  # pragma: no cover - no app here writes that way

    body: list[bytes] = []
    try:
        result = app(environ, start_response)
        try:
            if not wsgi.WSGI_LOCAL.already_handled:
                body = [bytes(chunk) for chunk in result]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except _CLIENT_GONE as exc:  # reset, or no probe before the read timeout: nothing to answer
        log.debug("a WebSocket upgrade ended: %r", exc)
        return
    except Exception:
        log.exception("the WebSocket upgrade request failed")
        if wsgi.WSGI_LOCAL.already_handled:
            return
        started[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
        body = [b"Internal Server Error"]
    if wsgi.WSGI_LOCAL.already_handled or not started:
        return
    status, headers = started
    data = b"".join(body)
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in ("content-length", "connection")]
    lines += [f"Content-Length: {len(data)}", "Connection: close", "", ""]
    try:
        sock.sendall("\r\n".join(lines).encode("latin-1") + data)
    except (OSError, UnicodeEncodeError) as exc:
        log.debug("answering a WebSocket upgrade failed: %r", exc)
