"""Login, refresh, who-am-I, and the JSON error shape for auth failures."""

from __future__ import annotations


def test_login_returns_access_and_refresh_tokens(client, auth):
    auth.create_user("alice")
    body = auth.login("alice")
    assert body["access_token"] and body["refresh_token"]
    assert body["user"]["username"] == "alice"


def test_wrong_password_is_401_with_error_body(client, auth):
    auth.create_user("alice")
    response = client.post("/api/auth/login", json={"username": "alice", "password": "nope"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "bad_credentials"


def test_login_without_json_body_is_a_clear_400(client):
    response = client.post("/api/auth/login", data="username=x")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_me_requires_a_token(client):
    response = client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_missing"


def test_me_names_the_token_owner(client, auth):
    token = auth.token_for("alice")
    response = client.get("/api/auth/me", headers=auth.headers(token))
    assert response.get_json()["user"]["username"] == "alice"


def test_refresh_token_gives_a_new_access_token(client, auth):
    auth.create_user("alice")
    tokens = auth.login("alice")
    response = client.post("/api/auth/refresh", headers=auth.headers(tokens["refresh_token"]))
    assert response.status_code == 200
    assert client.get("/api/auth/me", headers=auth.headers(response.get_json()["access_token"])).status_code == 200


def test_refresh_token_is_not_an_access_token(client, auth):
    auth.create_user("alice")
    tokens = auth.login("alice")
    assert client.get("/api/auth/me", headers=auth.headers(tokens["refresh_token"])).status_code == 401


def test_garbage_token_is_refused(client, auth):
    response = client.get("/api/auth/me", headers=auth.headers("not-a-jwt"))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_invalid"


def test_repeated_failed_logins_are_throttled_with_429(client, auth):
    from app.auth.throttle import login_throttle

    auth.create_user("alice")
    try:
        for _ in range(login_throttle.limit):
            assert client.post("/api/auth/login", json={"username": "alice", "password": "x"}).status_code == 401
        response = client.post("/api/auth/login", json={"username": "alice", "password": "password123"})
        assert response.status_code == 429
        assert response.get_json()["error"]["code"] == "too_many_attempts"
        assert response.get_json()["error"]["details"]["retry_after"] > 0
    finally:
        login_throttle.succeeded("alice", "127.0.0.1")


def test_logout_revokes_the_access_and_refresh_tokens(client, auth):
    auth.create_user("alice")
    tokens = auth.login("alice")
    response = client.post(
        "/api/auth/logout",
        json={"refresh_token": tokens["refresh_token"]},
        headers=auth.headers(tokens["access_token"]),
    )
    assert response.status_code == 200
    me = client.get("/api/auth/me", headers=auth.headers(tokens["access_token"]))
    assert me.status_code == 401 and me.get_json()["error"]["code"] == "token_revoked"
    refreshed = client.post("/api/auth/refresh", headers=auth.headers(tokens["refresh_token"]))
    assert refreshed.status_code == 401


def test_logout_leaves_other_sessions_working(client, auth):
    auth.create_user("alice")
    first, second = auth.login("alice"), auth.login("alice")
    client.post("/api/auth/logout", headers=auth.headers(first["access_token"]))
    assert client.get("/api/auth/me", headers=auth.headers(second["access_token"])).status_code == 200
