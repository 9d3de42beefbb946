"""``/api/auth``: exchange a password for tokens, refresh them, read the current user."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request
from flask_jwt_extended import decode_token
from sqlalchemy import select

from ..api.schema import Body, read_optional_json, spec
from ..database import commit_session
from ..errors import HeraldError, Unauthorized
from ..extensions import db
from ..models import User
from . import bp
from .session import (
    REFRESH_COOKIE,
    check_origin,
    clear_refresh_cookie_after_request,
    commit_minted_tokens,
    end_session,
    mint_access_token,
    session_revoked,
    session_user,
    set_refresh_cookie,
    start_session,
)
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
SESSION_SCHEMA = {
    "type": "object",
    "required": ["access_token", "user"],
    "properties": {"access_token": {"type": "string"}, "user": {"type": "object"}},
}
SIGNED_OUT_SCHEMA = {
    "type": "object",
    "required": ["ok", "closed_connections"],
    "properties": {"ok": {"const": True}, "closed_connections": {"type": "integer"}},
}
USER_SCHEMA = {"type": "object", "required": ["user"], "properties": {"user": {"type": "object"}}}
#: ``refresh`` and ``logout`` may name a refresh token in an optional body.
REFRESH_BODY = Body(
    {"type": "object", "properties": {"refresh_token": {"type": "string"}}},
    read=read_optional_json,
    required=False,
)


def checked_login(body: dict[str, Any]) -> User:
    """The user a username and password name, under the failed-login throttle."""
    address = request.remote_addr or "-"
    wait = login_throttle.retry_after(body["username"], address)
    if wait:
        raise TooManyAttempts(f"too many failed logins; try again in {wait} s", details={"retry_after": wait})
    user = db.session.scalar(select(User).where(User.username == body["username"]))
    if user is None or not user.check_password(body["password"]):
        login_throttle.failed(body["username"], address)
        raise Unauthorized("wrong username or password", code="bad_credentials")
    login_throttle.succeeded(body["username"], address)
    return user


@bp.post("/login")
@spec(body=LOGIN_SCHEMA, responses={200: TOKENS_SCHEMA, 401: None, 429: None}, auth=False)
def login(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Log in with username and password; returns an access and a refresh token."""
    user = checked_login(body)
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
    responses={200: SIGNED_OUT_SCHEMA},
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


# -- browser sessions (app/auth/session.py): the refresh token lives in a cookie ----------


@bp.post("/session")
@spec(body=LOGIN_SCHEMA, responses={200: SESSION_SCHEMA, 401: None, 403: None, 429: None}, auth=False)
def session_start(body: dict[str, Any]) -> Response:
    """Sign a browser in: the refresh token goes into the HttpOnly session cookie, the
    access token into the answer (for the tab's memory)."""
    check_origin()
    user = checked_login(body)
    # A session this browser had is replaced, so it ends: its cookie is about to be overwritten.
    end_cookie_session()
    refresh_token, access_token = start_session(user)
    commit_minted_tokens(user.id)
    response = jsonify({"access_token": access_token, "user": user.to_dict()})
    set_refresh_cookie(response, refresh_token)
    return response


def end_cookie_session() -> int:
    """End the session of the request's refresh cookie, if it is a valid one: its tokens
    are revoked and their sockets closed everywhere; returns how many this process closed."""
    try:
        user, claims = authenticate(request.cookies.get(REFRESH_COOKIE), token_type="refresh")
    except Unauthorized:
        return 0
    from ..realtime.connections import revoke_token

    return sum(revoke_token(jti, exp) for jti, exp in end_session(claims, user.id))


@bp.post("/session/refresh")
@spec(responses={200: SESSION_SCHEMA, 401: None, 403: None}, auth="cookie")
def session_refresh() -> dict[str, Any]:
    """A new access token for a tab, from the browser's session cookie (no body)."""
    check_origin()
    user, claims = session_user()
    session_jti = str(claims["jti"])
    access_token = mint_access_token(user, session_jti)
    commit_minted_tokens(user.id)
    if session_revoked(session_jti):  # signed out while this token was being minted
        revoke(decode_token(access_token), user.id)
        commit_session()
        clear_refresh_cookie_after_request()
        raise Unauthorized("the session has been signed out", code="token_revoked")
    return {"access_token": access_token, "user": user.to_dict()}


@bp.delete("/session")
@spec(responses={200: SIGNED_OUT_SCHEMA, 403: None}, auth="cookie")
def session_end() -> dict[str, Any]:
    """Sign a browser out: its refresh token and every tab's access token are revoked,
    their sockets closed on every process, and the cookie cleared."""
    check_origin()
    clear_refresh_cookie_after_request()
    closed = end_cookie_session()
    # The tab's own token too, if it is still valid (without a session: signed out already).
    try:
        bearer_user, bearer_claims = authenticate(bearer_token())
    except Unauthorized:
        bearer_user = None
    if bearer_user is not None:
        revoke(bearer_claims, bearer_user.id)
        commit_session()
        from ..realtime.connections import revoke_token

        closed += revoke_token(str(bearer_claims["jti"]), float(bearer_claims["exp"]))
    return {"ok": True, "closed_connections": closed}
