"""Scoped, short-lived tokens for pages that cannot hold a user's access token.

A browser's ``EventSource`` cannot send an ``Authorization`` header, and a widget on
another site must never see the user's access token. So a holder of an access token (the
host site's backend) asks ``POST /api/stream-tokens`` for a **stream token** — good for
opening streams of one job (or of all the user's jobs) for ``STREAM_TOKEN_TTL_SECONDS``
— and, when it asks for it, a **cancel token** good for ``POST /api/jobs/<id>/cancel`` of
that one job for as long.

Why they cannot be used for anything else: they are signed with the app's JWT key but
carry their own ``aud`` (``herald:stream`` / ``herald:cancel``) and ``type``; the access
token check (:func:`app.auth.tokens.authenticate`) refuses a token with an audience, and
these checks refuse any token without theirs. Each remembers the access token it was
issued under (``parent_jti``, ``parent_exp``): a stream opened with it lives no longer
than that token and ends when it is revoked, exactly like a socket opened with the access
token itself.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from flask import current_app

from ..errors import NotFound, Unauthorized
from ..extensions import db
from ..models import RevokedToken, User
from .cache import token_cache
from .tokens import authenticate, bearer_token

STREAM_AUDIENCE = "herald:stream"
CANCEL_AUDIENCE = "herald:cancel"
#: ``scope`` of a stream token good for every job of the user (else ``job:<id>``).
ALL_JOBS = "all"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Grant:
    """What a checked scoped token allows, and whose session it belongs to."""

    user_id: int
    #: The one job it is good for; None for every job of the user (stream tokens only).
    job_id: int | None
    #: The access token it was issued under: sessions end with it (revocation, expiry).
    parent_jti: str
    parent_exp: float | None


def issue(audience: str, user_id: int, job_id: int | None, parent_claims: dict[str, Any]) -> tuple[str, float]:
    """A token for ``audience`` scoped to ``job_id`` (None: all jobs); returns it and its expiry."""
    now = time.time()
    expires_at = now + int(current_app.config["STREAM_TOKEN_TTL_SECONDS"])
    parent_exp = parent_claims.get("exp")
    if isinstance(parent_exp, int | float):
        expires_at = min(expires_at, float(parent_exp))  # never outlives the access token
    claims = {
        "aud": audience,
        "type": audience.split(":")[1],
        "sub": str(user_id),
        "scope": ALL_JOBS if job_id is None else f"job:{job_id}",
        "iat": int(now),
        "exp": expires_at,
        "jti": uuid.uuid4().hex,
        "parent_jti": str(parent_claims.get("jti")),
        "parent_exp": parent_exp,
    }
    return jwt.encode(claims, current_app.config["JWT_SECRET_KEY"], algorithm=_ALGORITHM), expires_at


def check(token: str | None, audience: str) -> Grant:
    """The grant of a valid scoped token for ``audience``; ``Unauthorized`` saying why not."""
    if not token:
        raise Unauthorized("a token is required", code="token_missing")
    try:
        claims = jwt.decode(token, current_app.config["JWT_SECRET_KEY"], algorithms=[_ALGORITHM], audience=audience)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; ask for a new one", code="token_expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"the token is invalid ({exc})", code="token_invalid") from None
    scope = str(claims.get("scope", ""))
    try:
        user_id = int(claims["sub"])
        job_id = None if scope == ALL_JOBS else int(scope.removeprefix("job:"))
    except (KeyError, TypeError, ValueError):
        raise Unauthorized("the token names no user or scope", code="token_invalid") from None
    parent_jti = str(claims.get("parent_jti"))
    if token_cache.is_revoked(parent_jti) or db.session.get(RevokedToken, parent_jti) is not None:
        raise Unauthorized("the session this token belongs to was revoked (logged out)", code="token_revoked")
    if db.session.get(User, user_id) is None:
        raise Unauthorized("the token's user no longer exists", code="token_invalid")
    parent_exp = claims.get("parent_exp")
    return Grant(user_id, job_id, parent_jti, float(parent_exp) if isinstance(parent_exp, int | float) else None)


def looks_scoped(token: str | None, audience: str) -> bool:
    """Whether ``token`` claims ``audience`` (unverified; only picks which check applies)."""
    if not token:
        return False
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("aud") == audience
    except jwt.InvalidTokenError:
        return False


def cancelling_user(job_id: int) -> int:
    """Who asks to cancel ``job_id``: the access token's user, or a cancel token's — only
    for the one job it was issued for (any other looks missing, like another user's)."""
    token = bearer_token()
    if looks_scoped(token, CANCEL_AUDIENCE):
        grant = check(token, CANCEL_AUDIENCE)
        if grant.job_id != job_id:
            raise NotFound(f"job {job_id} not found")
        return grant.user_id
    return authenticate(token)[0].id
