"""The token cache of socket connects: it saves the checks, and never admits a revoked token."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask_jwt_extended import decode_token
from sqlalchemy import event

from app.auth.cache import Identity, TokenCache, token_cache
from app.auth.tokens import authenticate_socket
from app.extensions import db, socketio
from app.models.token import RevokedToken
from app.realtime.connections import TOKEN_REVOKED_NOTICE, recheck_revocations
from app.realtime.delivery import handle_notice


def identity(jti: str = "j1", expires_at: float | None = None) -> Identity:
    return Identity(user_id=1, username="alice", user={"id": 1}, jti=jti, expires_at=expires_at)


def test_a_cached_token_is_served_without_reading_the_database(app, auth):
    token = auth.token_for("alice")
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        first = authenticate_socket(token)
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            again = authenticate_socket(token)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert again == first and again.username == "alice"
    assert statements == []


def test_an_entry_never_outlives_its_token():
    cache = TokenCache(ttl=30)
    cache.put("t", identity(expires_at=time.time() + 0.2))
    assert cache.get("t") is not None
    time.sleep(0.25)
    assert cache.get("t") is None
    cache.put("expired", identity(expires_at=time.time() - 1))
    assert cache.get("expired") is None


def test_revocation_drops_the_entry_and_refuses_a_late_put():
    """A check that began before the revocation cannot put the token back afterwards."""
    cache = TokenCache(ttl=30)
    cache.put("t", identity("j1"))
    cache.revoke("j1", time.time() + 60)
    assert cache.get("t") is None
    cache.put("t", identity("j1"))
    assert cache.get("t") is None and cache.is_revoked("j1")


def test_the_cache_is_bounded_oldest_first():
    cache = TokenCache(ttl=30, size=2)
    for name in ("a", "b", "c"):
        cache.put(name, identity(name))
    assert cache.get("a") is None and cache.get("b") is not None and cache.get("c") is not None


def test_a_revocation_notice_from_another_process_refuses_the_cached_token_at_once(app, auth):
    """The path a Redis notice takes: the token's sockets close and its cache entry goes."""
    token = auth.token_for("alice")
    sio = socketio.test_client(app, auth={"token": token})
    assert sio.is_connected()
    with app.app_context():
        claims = decode_token(token)
    assert token_cache.get(token) is not None
    handle_notice(TOKEN_REVOKED_NOTICE, {"jti": claims["jti"], "exp": claims["exp"]})
    assert not sio.is_connected()
    assert token_cache.get(token) is None
    # The database does not know (the revoking process wrote it): the cache alone refuses.
    again = socketio.test_client(app, auth={"token": token})
    assert not again.is_connected()


def test_logout_refuses_a_token_a_socket_connected_with_moments_before(app, client, auth):
    token = auth.token_for("alice")
    first = socketio.test_client(app, auth={"token": token})
    assert first.is_connected() and token_cache.get(token) is not None
    client.post("/api/auth/logout", headers=auth.headers(token))
    assert not first.is_connected()
    refused = socketio.test_client(app, auth={"token": token})
    assert not refused.is_connected()


def test_a_revocation_whose_notice_was_lost_still_ends_the_socket(app, auth):
    """Another process revoked the token while the message queue was down: its row is
    all there is, and the periodic recheck finds it."""
    token = auth.token_for("alice")
    other = auth.login("alice")["access_token"]
    doomed = socketio.test_client(app, auth={"token": token})
    spared = socketio.test_client(app, auth={"token": other})
    assert doomed.is_connected() and spared.is_connected()
    with app.app_context():
        claims = decode_token(token)
        db.session.add(
            RevokedToken(
                jti=claims["jti"],
                user_id=int(claims["sub"]),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        )
        db.session.commit()
        assert recheck_revocations() == 1
        assert recheck_revocations() == 0
    assert not doomed.is_connected() and spared.is_connected()
    assert token_cache.get(token) is None
    assert not socketio.test_client(app, auth={"token": token}).is_connected()


def test_the_expiry_watch_lets_go_of_closed_sessions(app, auth):
    from app.realtime.connections import expiry_watch

    token = auth.token_for("alice")
    clients = [socketio.test_client(app, auth={"token": token}) for _ in range(3)]
    for sio in clients[:2]:
        sio.disconnect()
    assert expiry_watch.forget_closed() >= 2
    assert expiry_watch.forget_closed() == 0
    assert clients[2].is_connected()
