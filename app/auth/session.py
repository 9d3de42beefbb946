"""Browser sessions: the refresh token in an HttpOnly cookie, access tokens in tab memory.

A browser signs in once (``POST /api/auth/session``). The refresh token goes into the
``herald_refresh`` cookie — ``HttpOnly`` (no script reads it), ``SameSite=Strict``,
``Path=/api/auth/session`` (sent to these routes only, never to the rest of the API or to
sockets), ``Secure`` per ``REFRESH_COOKIE_SECURE`` — and never into a response body. Each
tab keeps its access token in memory and gets one from the cookie when it opens
(``POST /api/auth/session/refresh``), so a new tab needs no sign-in and no token is ever in
``sessionStorage`` or ``localStorage``, where any script could read it.

Sign-out (``DELETE /api/auth/session``) revokes the refresh token and every access token
the session minted (:class:`~app.models.SessionToken` lists them), through the same path
as ``POST /api/auth/logout``: each is in the revoked-token table (REST on every process
refuses it), and its sockets are closed on every process. The other tabs' next request is
refused; their refresh finds no cookie, so they land on ``/login``.

Cross-site request forgery. The cookie authenticates these three routes only, and two
checks guard them:

* ``SameSite=Strict``: the browser attaches the cookie only to requests that a page of
  this site started, so a foreign site cannot sign a user out, in, or mint a token.
* The ``Origin`` header must name this server (:func:`check_origin`). SameSite is about
  *sites*: a page on a sibling subdomain (``evil.example.com`` next to
  ``herald.example.com``) is same-site and would get the cookie sent. Browsers always
  send ``Origin`` on a ``POST``/``DELETE`` ``fetch``, so a missing one is refused too.
  Its scheme is not compared: TLS often ends at a proxy, and the host is what tells origins
  apart here.

flask-jwt-extended's double-submit CSRF cookie was not chosen: it needs a second cookie a
script can read (the token of the double submit), which a sibling subdomain can overwrite
("cookie tossing"), and it adds nothing the Origin check does not already refuse. A
forged refresh would in any case only mint a token the forging page cannot read (the
answer has no CORS headers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Response, after_this_request, current_app, request
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from sqlalchemy import delete, select

from ..database import commit_session
from ..errors import Forbidden, Unauthorized
from ..extensions import db
from ..models import RevokedToken, SessionToken, User
from .tokens import authenticate, revoke

#: The refresh cookie's name, and the path it is sent to (the session routes only).
REFRESH_COOKIE = "herald_refresh"
COOKIE_PATH = "/api/auth/session"


def check_origin() -> None:
    """Refuse a session call whose ``Origin`` is missing or names another host (CSRF)."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        raise Forbidden("a browser session call must come from a Herald page (no Origin)", code="origin_refused")
    if urlsplit(origin).netloc.lower() != request.host.lower():
        raise Forbidden(f"a browser session call from {origin} is refused", code="origin_refused")


def cookie_secure() -> bool:
    """Whether the refresh cookie is ``Secure`` for this request (``REFRESH_COOKIE_SECURE``)."""
    setting = current_app.config["REFRESH_COOKIE_SECURE"]
    return request.is_secure if setting == "auto" else setting == "true"


def set_refresh_cookie(response: Response, refresh_token: str) -> None:
    """Put the refresh token in the session cookie, for as long as the token lives."""
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]),
        path=COOKIE_PATH,
        secure=cookie_secure(),
        httponly=True,
        samesite="Strict",
    )


def clear_refresh_cookie_after_request() -> None:
    """Delete the cookie in whatever response this request gets (an error one too)."""

    @after_this_request
    def clear(response: Response) -> Response:
        response.delete_cookie(
            REFRESH_COOKIE, path=COOKIE_PATH, secure=cookie_secure(), httponly=True, samesite="Strict"
        )
        return response


def start_session(user: User) -> tuple[str, str]:
    """A new session's refresh token and its first access token (recorded, not committed)."""
    refresh_token = create_refresh_token(identity=str(user.id))
    session_jti = str(decode_token(refresh_token)["jti"])
    return refresh_token, mint_access_token(user, session_jti)


def mint_access_token(user: User, session_jti: str) -> str:
    """An access token for a tab, listed under its session (not committed)."""
    token = create_access_token(identity=str(user.id))
    claims = decode_token(token)
    db.session.add(
        SessionToken(
            jti=str(claims["jti"]),
            session_jti=session_jti,
            user_id=user.id,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    )
    return token


def session_user() -> tuple[User, dict[str, Any]]:
    """The user and claims of the request's refresh cookie, or ``Unauthorized`` (cookie cleared)."""
    try:
        return authenticate(request.cookies.get(REFRESH_COOKIE), token_type="refresh")
    except Unauthorized:
        clear_refresh_cookie_after_request()
        raise


def session_revoked(session_jti: str) -> bool:
    """Whether the session's refresh token is in the revoked-token table now."""
    return db.session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == session_jti)) is not None


def end_session(refresh_claims: dict[str, Any], user_id: int) -> list[tuple[str, float]]:
    """Revoke the session's refresh token, then each access token it minted that is still
    valid (both committed); returns the access tokens' ``(jti, exp)`` so that their sockets
    can be closed.

    The refresh token's revocation is committed before the list is read: a refresh racing
    this sign-out either recorded its token in time to be listed here, or finds the
    session revoked after recording it (``session/refresh`` checks again) and revokes it.
    """
    session_jti = str(refresh_claims["jti"])
    revoke(refresh_claims, user_id)
    commit_session()
    now = datetime.now(UTC)
    rows = db.session.scalars(
        select(SessionToken).where(SessionToken.session_jti == session_jti, SessionToken.expires_at >= now)
    ).all()
    ended = []
    for row in rows:
        exp = row.expires_at.timestamp()
        revoke({"jti": row.jti, "exp": exp}, user_id)
        ended.append((row.jti, exp))
    commit_session(delete(SessionToken).where(SessionToken.session_jti == session_jti))
    return ended


def commit_minted_tokens(user_id: int) -> None:
    """Commit the tokens ``start_session``/``mint_access_token`` recorded, and forget the
    user's expired ones (of no use to a sign-out any more)."""
    now = datetime.now(UTC)
    commit_session(delete(SessionToken).where(SessionToken.user_id == user_id, SessionToken.expires_at < now))
