"""``/api/auth``: exchange a password for tokens, refresh them, read the current user."""

from __future__ import annotations

from typing import Any

from flask import g, request
from sqlalchemy import select

from ..api.schema import Body, read_optional_json, spec
from ..database import commit_session
from ..errors import HeraldError, Unauthorized
from ..extensions import db
from ..models import User
from . import bp
from .throttle import login_throttle
from .tokens import authenticate, bearer_token, current_user, issue_tokens, revoke, user_from_token


class TooManyAttempts(HeraldError):
    """Too many failed logins from one address for one name."""

    status = 429
    code = "too_many_attempts"


LOGIN_SCHEMA = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string", "minLength": 1, "maxLength": 64},
        "password": {"type": "string", "minLength": 1, "maxLength": 1024},
    },
    "additionalProperties": False,
}
TOKENS_SCHEMA = {
    "type": "object",
    "required": ["access_token", "refresh_token"],
    "properties": {"access_token": {"type": "string"}, "refresh_token": {"type": "string"}},
}
USER_SCHEMA = {"type": "object", "required": ["user"], "properties": {"user": {"type": "object"}}}
#: ``refresh`` and ``logout`` may name a refresh token in an optional body.
REFRESH_BODY = Body(
    {"type": "object", "properties": {"refresh_token": {"type": "string"}}},
    read=read_optional_json,
    required=False,
)


@bp.post("/login")
@spec(body=LOGIN_SCHEMA, responses={200: TOKENS_SCHEMA, 401: None, 429: None}, auth=False)
def login(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Log in with username and password; returns an access and a refresh token."""
    address = request.remote_addr or "-"
    wait = login_throttle.retry_after(body["username"], address)
    if wait:
        raise TooManyAttempts(f"too many failed logins; try again in {wait} s", details={"retry_after": wait})
    user = db.session.scalar(select(User).where(User.username == body["username"]))
    if user is None or not user.check_password(body["password"]):
        login_throttle.failed(body["username"], address)
        raise Unauthorized("wrong username or password", code="bad_credentials")
    login_throttle.succeeded(body["username"], address)
    return {**issue_tokens(user), "user": user.to_dict()}, 200


@bp.post("/refresh")
@spec(body=REFRESH_BODY, responses={200: TOKENS_SCHEMA, 401: None}, auth="refresh")
def refresh(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Trade a refresh token (as Bearer, or ``refresh_token`` in the body) for a new token pair."""
    user = user_from_token(bearer_token() or body.get("refresh_token"), token_type="refresh")
    return issue_tokens(user), 200


@bp.get("/me")
@spec(responses={200: USER_SCHEMA})
def me() -> dict[str, Any]:
    """The user the access token belongs to."""
    return {"user": current_user().to_dict()}


@bp.post("/logout")
@spec(
    body=REFRESH_BODY,
    responses={
        200: {
            "type": "object",
            "required": ["ok", "closed_connections"],
            "properties": {"ok": {"const": True}, "closed_connections": {"type": "integer"}},
        }
    },
)
def logout(body: dict[str, Any]) -> dict[str, Any]:
    """Revoke the access token (and ``refresh_token`` from the body); its sockets are closed
    on every process (``closed_connections`` counts this process's)."""
    user = current_user()
    revoke(g.token_claims, user.id)
    refresh_token = body.get("refresh_token")
    if isinstance(refresh_token, str):
        try:
            refresh_user, refresh_claims = authenticate(refresh_token, token_type="refresh")
        except Unauthorized:
            refresh_user = None
        if refresh_user is not None and refresh_user.id == user.id:
            revoke(refresh_claims, user.id)
    commit_session()
    from ..realtime.connections import revoke_token

    # After the commit: a process that hears of it and checks the database agrees.
    closed = revoke_token(str(g.token_claims["jti"]), g.token_claims.get("exp"))
    return {"ok": True, "closed_connections": closed}
