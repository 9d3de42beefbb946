"""Logging: level and format from config, the job id on job lines, tokens never written.

``configure_logging`` installs one handler on the root logger (text or JSON lines) with
two filters: :class:`JobIdFilter` stamps every record with the id of the job whose code
emitted it (set by :func:`job_logging`, per thread or greenlet), and
:class:`RedactSecrets` rewrites JWTs, ``token=`` values, ``Bearer`` credentials and URL
passwords before anything is formatted. :class:`RequestLog` writes one line per HTTP
request, with the query string redacted the same way.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: Replaces every secret the redaction finds.
REDACTED = "[redacted]"

#: A JWT: base64url header (always ``{"`` → ``eyJ``), payload, optional signature.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
#: ``token=…``, ``access_token=…`` (query strings, form bodies, free text).
_KEY_VALUE = re.compile(r"(?i)\b([\w-]*(?:token|password|secret))=[^&\s\"'\\,;]+")
#: ``'token': '…'`` / ``"authorization": "…"`` (a dict or JSON object in a message).
_QUOTED_FIELD = re.compile(r"(?i)(['\"][\w-]*(?:token|password|secret|authorization)['\"]\s*:\s*['\"])[^'\"]*")
#: An ``Authorization: Bearer …`` credential however it got into the message.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"'\\,;]+")
#: The password of a URL (``redis://:pw@host``, ``postgresql://u:pw@host``).
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s/]+@")


def redact(text: str) -> str:
    """``text`` with credentials replaced: nothing that authenticates reaches a log."""
    if not text:
        return text
    text = _JWT.sub(REDACTED, text)
    text = _KEY_VALUE.sub(rf"\1={REDACTED}", text)
    text = _QUOTED_FIELD.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _URL_PASSWORD.sub(r"\1***@", text)


# -- the job id of the running code -----------------------------------------------------

#: The job whose code runs in this thread or greenlet (greenlet >= 1.0 gives each
#: greenlet its own context, so eventlet and gevent keep jobs apart too).
_current_job: ContextVar[int | None] = ContextVar("herald_job_id", default=None)


@contextmanager
def job_logging(job_id: int) -> Iterator[None]:
    """Stamp ``job_id`` on every log record emitted inside the block (this task only)."""
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


def current_job_id() -> int | None:
    """The job :func:`job_logging` set for the running thread or greenlet, if any."""
    return _current_job.get()


class JobIdFilter(logging.Filter):
    """Adds ``record.job_id`` (None outside a job) so formatters can show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _current_job.get()
        return True


class RedactSecrets(logging.Filter):
    """Rewrites the message, traceback and stack of a record without its credentials."""

    _tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when formatting
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# -- formatters ------------------------------------------------------------------------

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: [job N] message``: the readable default."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(job_tag)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        record.job_tag = f"[job {job_id}] " if job_id is not None else ""
        return redact(super().format(record))


def _utc_time(created: float) -> str:
    """``2026-05-09T07:35:25.123Z``: sortable, and the same in every process."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then
    ``job_id``, request fields and any other ``extra=`` field when present, and
    ``exception`` with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_") and value is not None and key != "job_tag":
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


# -- set-up ----------------------------------------------------------------------------

#: Marks the root handler Herald installed (so a second ``create_app`` reconfigures it).
_HERALD_HANDLER = "_herald_handler"
_job_id_filter = JobIdFilter()
_redact_filter = RedactSecrets()


def configure_logging(level: str, log_format: str) -> logging.Handler | None:
    """Install (or reconfigure) Herald's root handler; returns it.

    Like ``logging.basicConfig``, it leaves a root logger that another host already gave
    handlers (pytest, an embedding program) alone and returns None. Once installed, later
    ``warnings`` go through logging too, so ``LOG_FORMAT=json`` output stays JSON.
    """
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if getattr(handler, _HERALD_HANDLER, False)]
    if root.handlers and not ours:
        return None
    handler = ours[0] if ours else logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_job_id_filter)
    handler.addFilter(_redact_filter)
    if not ours:
        setattr(handler, _HERALD_HANDLER, True)
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler


# -- the request log -------------------------------------------------------------------

request_log = logging.getLogger("herald.request")

#: Paths logged at DEBUG (unless they fail with a 5xx): Socket.IO's polling and
#: handshakes, and what probes and scrapers call every few seconds.
QUIET_PREFIXES = ("/socket.io/", "/health", "/ready", "/metrics")


def request_target(environ: dict[str, Any]) -> str:
    """The request's path and query string, credentials redacted."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    return redact(f"{path}?{query}" if query else path)


#: Where a WSGI app that keeps the socket after its request returns (``realtime.hub_reader``)
#: puts a function taking the callable to run once the socket has closed.
AFTER_SOCKET_CLOSE = "herald.after_socket_close"
#: The environ entries a request's log line reads.
_LOGGED_KEYS = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR")


class RequestLog:
    """WSGI middleware: one ``herald.request`` line per request, written when it ends.

    Fields: ``method``, ``path`` (query string redacted), ``status``, ``duration_ms``,
    ``remote_addr``. A WebSocket (plain or Socket.IO) is one request that lasts as long
    as the socket: it is logged when the socket closes, status 101 (the servers report a
    taken-over socket as 200 or not at all). Headers are never logged (``Authorization``
    stays out).
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        status: list[int] = []

        def recording_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status[:] = [int(status_line.split(" ", 1)[0])]
            return start_response(status_line, headers, exc_info)

        upgrade = environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        kept: list[Callable[[Callable[[], None]], None]] = []
        if upgrade:
            environ[AFTER_SOCKET_CLOSE] = kept

        def log_line(logged: dict[str, Any]) -> None:
            code = status[0] if status else None
            if upgrade and code in (None, 200):  # the socket was taken over: its handshake said 101
                code = 101
            self._log(logged, code or 500, started)

        def done() -> None:
            log_line(environ)

        try:
            result = self.wsgi_app(environ, recording_start_response)
        except Exception:
            done()
            raise
        if kept:  # the socket outlives the request (hub_reader): log it when it closes
            # Only what the line needs: the environ holds the finished request's objects.
            summary = {key: environ[key] for key in _LOGGED_KEYS if key in environ}
            kept[0](lambda: log_line(summary))
            return result
        if hasattr(result, "__len__") or _is_file_wrapper(environ, result):
            # A complete body (servers size it) or a file the server may sendfile: keep it.
            done()
            return result
        return _Closing(result, done)

    @staticmethod
    def _log(environ: dict[str, Any], status: int, started: float) -> None:
        try:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            quiet = status < 500 and environ.get("PATH_INFO", "").startswith(QUIET_PREFIXES)
            level = logging.DEBUG if quiet else logging.INFO
            if not request_log.isEnabledFor(level):  # a Socket.IO poll at LOG_LEVEL=INFO costs no more
                return
            method = environ.get("REQUEST_METHOD", "-")
            path = request_target(environ)
            remote_addr = environ.get("REMOTE_ADDR") or "-"
            request_log.log(
                level,
                "%s %s %s %.1f ms %s",
                method,
                path,
                status,
                duration_ms,
                remote_addr,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "remote_addr": remote_addr,
                },
            )
        except Exception:  # the log line must never break a response
            pass


def _is_file_wrapper(environ: dict[str, Any], result: Any) -> bool:
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and isinstance(result, wrapper)


class _Closing:
    """The response body, unchanged, with ``on_close`` run once when the server closes it."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._iterator = iter(body)
        self._on_close: Callable[[], None] | None = on_close

    def __iter__(self) -> _Closing:
        return self

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()
