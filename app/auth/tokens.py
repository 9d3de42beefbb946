"""The one token check, used by REST, Socket.IO and plain WebSocket alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from jwt import ExpiredSignatureError, InvalidTokenError

from ..errors import Unauthorized
from ..extensions import db
from ..models import RevokedToken, User
from .cache import Identity, token_cache

F = TypeVar("F", bound=Callable[..., Any])

#: The ``type`` claim of a producer token: it reports into one external job and reads nothing.
PRODUCER_TOKEN_TYPE = "producer"


def issue_tokens(user: User) -> dict[str, str]:
    """A fresh access and refresh token pair (subject is the user id as a string)."""
    identity = str(user.id)
    return {
        "access_token": create_access_token(identity=identity),
        "refresh_token": create_refresh_token(identity=identity),
    }


def issue_producer_token(owner_id: int, job_id: int, expires_at: datetime) -> str:
    """A token that may only report into job ``job_id`` until ``expires_at`` (or the job's end).

    Its ``type`` is ``producer``, so every check that wants an access token (REST reads,
    Socket.IO and plain WebSocket connects) refuses it.
    """
    return create_access_token(
        identity=str(owner_id),
        expires_delta=max(expires_at - datetime.now(UTC), timedelta(seconds=1)),
        additional_claims={"type": PRODUCER_TOKEN_TYPE, "job_id": job_id},
    )


def producer_claims(token: str | None, job_id: int) -> dict[str, Any]:
    """The claims of a valid producer token for job ``job_id``, or ``Unauthorized`` saying why.

    The job's own state (ended, deleted) is the caller's to check: the token dies with it.
    """
    if not token:
        raise Unauthorized("a producer token is required (Authorization: Bearer)", code="token_missing")
    try:
        claims = decode_token(token)
    except ExpiredSignatureError:
        raise Unauthorized("the producer token has expired", code="token_expired") from None
    except Exception as exc:  # bad signature, malformed, flask-jwt-extended's own errors
        raise Unauthorized(f"the token is invalid ({exc})", code="token_invalid") from None
    if claims.get("type") != PRODUCER_TOKEN_TYPE:
        raise Unauthorized(
            "a producer token is required (the one POST /api/jobs returned with the external job)",
            code="token_invalid",
        )
    if claims.get("job_id") != job_id:
        raise Unauthorized(f"this producer token reports into job {claims.get('job_id')} only", code="token_invalid")
    if db.session.get(RevokedToken, str(claims.get("jti"))) is not None:
        raise Unauthorized("the producer token has been revoked", code="token_revoked")
    return claims


def user_from_token(token: str | None, *, token_type: str = "access") -> User:
    """The user a token names, or ``Unauthorized`` saying why not."""
    return authenticate(token, token_type=token_type)[0]


def authenticate(token: str | None, *, token_type: str = "access") -> tuple[User, dict[str, Any]]:
    """The user and claims of a valid, unrevoked token, or ``Unauthorized`` saying why not."""
    if not token:
        raise Unauthorized("a token is required", code="token_missing")
    try:
        claims = decode_token(token)
    except ExpiredSignatureError:
        raise Unauthorized("the token has expired", code="token_expired") from None
    except (InvalidTokenError, ValueError, KeyError) as exc:
        raise Unauthorized(f"the token is invalid ({exc})", code="token_invalid") from None
    except Exception as exc:  # flask-jwt-extended's own errors (wrong type, revoked ...)
        raise Unauthorized(f"the token was refused ({exc})", code="token_invalid") from None
    if claims.get("type") != token_type:
        if claims.get("type") == PRODUCER_TOKEN_TYPE:
            raise Unauthorized(
                "a producer token only reports into its job (POST /api/jobs/<id>/report); it reads nothing",
                code="token_invalid",
            )
        raise Unauthorized(f"an {token_type} token is required", code="token_invalid")
    try:
        user_id = int(claims["sub"])
    except (KeyError, TypeError, ValueError):
        raise Unauthorized("the token names no user", code="token_invalid") from None
    if db.session.get(RevokedToken, str(claims.get("jti"))) is not None:
        raise Unauthorized("the token has been revoked (logged out)", code="token_revoked")
    user = db.session.get(User, user_id)
    if user is None:
        raise Unauthorized("the token's user no longer exists", code="token_invalid")
    return user, claims


def authenticate_socket(token: str | None) -> Identity:
    """``authenticate`` for a socket's connect, through the short-lived token cache.

    A hit skips the signature check and both database reads; a revoked token never hits
    (see :mod:`app.auth.cache`). Sockets need the identity only, never the ``User`` row.
    """
    if token and token_cache.ttl > 0:
        cached = token_cache.get(token)
        if cached is not None:
            return cached
    user, claims = authenticate(token)
    exp = claims.get("exp")
    identity = Identity(
        user_id=user.id,
        username=user.username,
        user=user.to_dict(),
        jti=str(claims.get("jti")),
        expires_at=float(exp) if isinstance(exp, int | float) else None,
    )
    if token and token_cache.ttl > 0:
        token_cache.put(token, identity)
    return identity


def revoke(claims: dict[str, Any], user_id: int) -> None:
    """Add a token to the blocklist until it would expire anyway (idempotent)."""
    jti = str(claims["jti"])
    if db.session.get(RevokedToken, jti) is None:
        db.session.add(RevokedToken(jti=jti, user_id=user_id, expires_at=datetime.fromtimestamp(claims["exp"], UTC)))


def bearer_token() -> str | None:
    """The token from ``Authorization: Bearer``, else the ``token`` query parameter."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.args.get("token") or None


def login_required(view: F) -> F:
    """Require a valid access token; the user is in ``g.user``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.user, g.token_claims = authenticate(bearer_token())
        return view(*args, **kwargs)

    return cast(F, wrapper)


def current_user() -> User:
    """The user ``login_required`` authenticated."""
    return cast(User, g.user)
