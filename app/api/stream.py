"""``/api/stream-tokens`` and the Server-Sent Events streams (``/api/jobs/<id>/stream``,
``/api/stream?all=1``), plus CORS for the routes a page on another site calls.

``EventSource`` cannot send headers, so a stream takes a short-lived **stream token** in
``?token=`` (``app.auth.scoped``); programs may send their access token as ``Authorization:
Bearer`` instead. The transport itself is ``app.realtime.sse``.

CORS: a browser origin listed in ``CORS_ALLOWED_ORIGINS`` (``*`` lists all) gets
``Access-Control-Allow-*`` answers on these routes and on ``POST /api/jobs/<id>/cancel``
(the widget's Cancel button); any other gets none, and a stream refuses it with 403 like
a WebSocket handshake. No cookies are involved (``Allow-Credentials`` is never sent): the
tokens travel in the URL or the ``Authorization`` header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, g, request

from ..auth import scoped
from ..auth.tokens import authenticate_socket, bearer_token, current_user
from ..errors import BadRequest, Forbidden, NotFound
from ..extensions import db
from ..jobs import service
from ..models import FINAL_STATUSES
from ..realtime.origins import origin_allowed
from . import bp
from .schema import ID_SCHEMA, files, spec

if TYPE_CHECKING:
    from ..realtime.sse import EventStream

#: The response headers of every stream (``X-Accel-Buffering``: nginx must not buffer it).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

#: Routes whose answers carry CORS headers for allowed origins (endpoint names).
CORS_ENDPOINTS = frozenset({"api.stream_tokens", "api.job_stream", "api.all_stream", "api.cancel_job"})
#: Request headers a cross-origin caller may send to them.
CORS_REQUEST_HEADERS = "Authorization, Content-Type, Last-Event-ID"

TOKEN_BODY = {
    "type": "object",
    "properties": {
        "job_id": ID_SCHEMA,
        "all": {"type": "boolean"},
        "cancel": {"type": "boolean", "description": "also ask for a cancel token of job_id"},
    },
    "additionalProperties": False,
}
TOKEN_ANSWER = {
    "type": "object",
    "required": ["token", "expires_at", "scope", "can_cancel"],
    "properties": {
        "token": {"type": "string"},
        "expires_at": {"type": "number", "description": "epoch seconds; only for opening a stream"},
        "scope": {"type": "string", "description": "`job:<id>` or `all`"},
        "can_cancel": {"type": "boolean"},
        "cancel_token": {"type": "string", "description": "with can_cancel: Bearer token for the job's cancel"},
    },
}
STREAM_QUERY = {
    "token": {"type": "string", "maxLength": 4096},
    "last_event_id": {"type": "string", "maxLength": 64},
}

#: A stream's answers besides the implied ones (its body is ``text/event-stream``).
STREAM_ANSWERS: dict[int, Any] = {200: files("text/event-stream"), 403: None, 429: None}
#: Streams check their token themselves: a stream token (``?token=``) or an access token.
STREAM_AUTH = "stream token or access token"


@bp.post("/stream-tokens")
@spec(body=TOKEN_BODY, responses={200: TOKEN_ANSWER})
def stream_tokens(body: dict[str, Any]) -> dict[str, Any]:
    """A short-lived token that opens the SSE stream of one job (``job_id``) or of all
    your jobs (``all``); with ``cancel`` and a job still active, a cancel token of it too.

    The token only *opens* streams, for ``STREAM_TOKEN_TTL_SECONDS``; an open stream lives
    as long as the access token that asked for it (and ends when it is revoked).
    """
    user = current_user()
    job_id = body.get("job_id")
    if (job_id is None) == (body.get("all") is not True):
        raise BadRequest("give either job_id or all: true", code="validation_error")
    if job_id is None and body.get("cancel"):
        raise BadRequest("cancel goes with a job_id: a cancel token is for one job", code="validation_error")
    claims = g.token_claims
    answer: dict[str, Any] = {"can_cancel": False}
    if job_id is not None:
        job = service.get_owned_job(user.id, job_id)
        if body.get("cancel") and job.status not in {status.value for status in FINAL_STATUSES}:
            answer["cancel_token"], _ = scoped.issue(scoped.CANCEL_AUDIENCE, user.id, job_id, claims)
            answer["can_cancel"] = True
    token, expires_at = scoped.issue(scoped.STREAM_AUDIENCE, user.id, job_id, claims)
    scope = scoped.ALL_JOBS if job_id is None else f"job:{job_id}"
    return {"token": token, "expires_at": expires_at, "scope": scope, **answer}


@bp.get("/jobs/<id:job_id>/stream")
@spec(query=STREAM_QUERY, responses=STREAM_ANSWERS | {204: None}, auth=STREAM_AUTH)
def job_stream(job_id: int, token: str | None, last_event_id: str | None) -> Response:
    """One job as Server-Sent Events: its snapshot, its durable events after
    ``Last-Event-ID`` (header, or ``last_event_id``; from the start without it), then live
    until its final status. ``204`` when the job has ended and nothing is left to send."""
    from ..realtime.sse import open_job_stream

    _check_origin()
    session = _stream_session(job_id)
    cursor = _cursor(last_event_id)
    if cursor is not None and cursor[0] not in (None, job_id):
        raise BadRequest(f"Last-Event-ID names job {cursor[0]}, not {job_id}", code="invalid_last_event_id")
    last_seq = cursor[1] if cursor is not None else 0
    job = service.get_owned_job(session.user_id, job_id)
    if job.status in {status.value for status in FINAL_STATUSES} and last_seq >= job.last_seq:
        return Response(status=204, headers=STREAM_HEADERS)
    stream = _open(session, job_id)
    try:
        open_job_stream(stream, job_id, last_seq)
    except BaseException:
        stream.close()
        raise
    return _respond(stream)


@bp.get("/stream")
@spec(
    query={**STREAM_QUERY, "all": {"type": "string", "enum": ["1", "true"]}},
    responses=STREAM_ANSWERS,
    auth=STREAM_AUTH,
)
def all_stream(token: str | None, last_event_id: str | None, all: str | None) -> Response:  # noqa: A002
    """Every job of yours as Server-Sent Events (``all=1``), jobs created later too; with
    ``Last-Event-ID`` ``<job_id>:<seq>`` what was stored since that event is replayed first."""
    from ..realtime.sse import open_all_stream

    _check_origin()
    session = _stream_session(None)  # who asks first: a refused token is 401 whatever else is wrong
    if all is None:
        raise BadRequest("ask for all=1 (or follow one job at /api/jobs/<job_id>/stream)", code="validation_error")
    cursor = _cursor(last_event_id)
    if cursor is not None and cursor[0] is None:
        raise BadRequest("Last-Event-ID of the all stream is <job_id>:<seq>", code="invalid_last_event_id")
    if cursor is not None and cursor[0] is not None and not _owns(session.user_id, cursor[0]):
        # Another user's job and a job that never existed look alike (as on every route).
        raise BadRequest(f"Last-Event-ID names job {cursor[0]}, not one of yours", code="invalid_last_event_id")
    stream = _open(session, None)
    try:
        open_all_stream(stream, cursor)
    except BaseException:
        stream.close()
        raise
    return _respond(stream)


@dataclass(frozen=True)
class _Session:
    """Who opens a stream, and the access token it lives under (its ``jti`` and expiry)."""

    user_id: int
    jti: str | None
    expires_at: float | None


def _stream_session(job_id: int | None) -> _Session:
    """Authenticate a stream: a stream token in ``?token=`` (scoped to this job or to all
    jobs), or an access token (``Authorization: Bearer`` or ``?token=``)."""
    token = bearer_token()
    try:
        if scoped.looks_scoped(token, scoped.STREAM_AUDIENCE):
            grant = scoped.check(token, scoped.STREAM_AUDIENCE)
            if grant.job_id is not None and grant.job_id != job_id:
                raise Forbidden("this stream token is for another stream", code="token_scope")
            return _Session(grant.user_id, grant.parent_jti, grant.parent_exp)
        identity = authenticate_socket(token)
        return _Session(identity.user_id, identity.jti, identity.expires_at)
    finally:
        db.session.remove()


def _owns(user_id: int, job_id: int) -> bool:
    """Whether ``job_id`` is a job of ``user_id`` (a position an all stream may resume from)."""
    try:
        service.get_owned_job(user_id, job_id)
    except NotFound:
        return False
    finally:
        db.session.remove()
    return True


def _cursor(query_value: str | None) -> tuple[int | None, int] | None:
    from ..realtime.sse import parse_last_event_id

    raw = request.headers.get("Last-Event-ID") or query_value
    try:
        return parse_last_event_id(raw)
    except ValueError:
        raise BadRequest(
            "Last-Event-ID must be <job_id>:<seq> (or a seq) with integers in range", code="invalid_last_event_id"
        ) from None


def _open(session: _Session, job_id: int | None) -> EventStream:
    """A stream counted against the user's connections and watched like a socket."""
    from ..realtime.sse import EventStream

    config = current_app.config
    stream = EventStream(
        user_id=session.user_id,
        token_jti=session.jti,
        expires_at=session.expires_at,
        job_id=job_id,
        queue_limit=int(config["SSE_SEND_QUEUE"]),
        heartbeat=float(config["SSE_HEARTBEAT_SECONDS"]),
        retry_ms=int(config["SSE_RETRY_MS"]),
        environ=request.environ,
    )
    stream.register(
        send_timeout=float(config["WEBSOCKET_SEND_TIMEOUT"]), send_buffer=int(config["WEBSOCKET_SEND_BUFFER"])
    )
    return stream


def _respond(stream: EventStream) -> Response:
    db.session.remove()  # the body may last hours: hold no connection or stale rows
    response = Response(stream.body(), mimetype="text/event-stream", headers=STREAM_HEADERS)
    response.call_on_close(stream.close)
    return response


def _check_origin() -> None:
    """A browser origin must be ours or listed (as for WebSocket handshakes)."""
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.environ, current_app.config["CORS_ALLOWED_ORIGINS"]):
        raise Forbidden(f"origin {origin!r} is not allowed", code="origin_forbidden")


@bp.after_request
def cors_headers(response: Response) -> Response:
    """Let listed origins call the stream routes and the cancel route (preflight too)."""
    origin = request.headers.get("Origin")
    if not origin or request.endpoint not in CORS_ENDPOINTS:
        return response
    listed = current_app.config["CORS_ALLOWED_ORIGINS"]
    if "*" not in listed and origin not in listed:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers.add("Vary", "Origin")
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    return response
