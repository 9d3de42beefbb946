"""Browser sessions: the refresh token in an HttpOnly cookie, one access token per tab."""

from __future__ import annotations

import time

import pytest

from app.auth import routes
from app.auth.session import COOKIE_PATH, REFRESH_COOKIE
from app.auth.tokens import revoke
from app.config import ConfigError, load_config
from app.extensions import socketio

ORIGIN = {"Origin": "http://localhost"}


def sign_in(client, auth, username="alice"):
    auth.create_user(username)
    response = client.post("/api/auth/session", json={"username": username, "password": "password123"}, headers=ORIGIN)
    assert response.status_code == 200, response.get_json()
    return response


def new_tab(client):
    """What a new tab does first: an access token from the cookie."""
    return client.post("/api/auth/session/refresh", headers=ORIGIN)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_sign_in_puts_the_refresh_token_in_an_http_only_strict_cookie_scoped_to_the_session_routes(client, auth):
    response = sign_in(client, auth)
    body = response.get_json()
    assert set(body) == {"access_token", "user"}  # the refresh token is never in a body
    header = response.headers["Set-Cookie"]
    assert header.startswith(f"{REFRESH_COOKIE}=")
    attributes = {part.strip().split("=")[0].lower(): part for part in header.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].strip() == "SameSite=Strict"
    assert attributes["path"].strip() == f"Path={COOKIE_PATH}"
    assert "secure" not in attributes  # plain HTTP, REFRESH_COOKIE_SECURE=auto
    assert client.get("/api/auth/me", headers=bearer(body["access_token"])).status_code == 200


def test_the_cookie_is_secure_when_the_request_came_over_https(client, auth):
    auth.create_user("alice")
    response = client.post(
        "/api/auth/session",
        json={"username": "alice", "password": "password123"},
        headers={"Origin": "https://localhost"},
        base_url="https://localhost",
    )
    assert response.status_code == 200
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_new_tab_gets_its_own_access_token_from_the_cookie(client, auth):
    first = sign_in(client, auth).get_json()["access_token"]
    response = new_tab(client)
    assert response.status_code == 200
    second = response.get_json()["access_token"]
    assert second != first
    assert response.get_json()["user"]["username"] == "alice"
    assert client.get("/api/auth/me", headers=bearer(second)).status_code == 200


def test_refresh_without_a_cookie_is_401(client):
    response = new_tab(client)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_missing"


@pytest.mark.parametrize("headers", [{}, {"Origin": "null"}, {"Origin": "http://evil.example"}])
def test_session_calls_from_another_origin_or_none_are_refused(client, auth, headers):
    sign_in(client, auth)
    response = client.post("/api/auth/session/refresh", headers=headers)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "origin_refused"
    assert client.delete("/api/auth/session", headers=headers).status_code == 403
    assert new_tab(client).status_code == 200  # nothing was signed out


def test_sign_out_revokes_every_tabs_token_and_the_refresh_token_and_clears_the_cookie(client, auth):
    tab_one = sign_in(client, auth).get_json()["access_token"]
    tab_two = new_tab(client).get_json()["access_token"]
    response = client.delete("/api/auth/session", headers={**ORIGIN, **bearer(tab_one)})
    assert response.status_code == 200 and response.get_json()["ok"] is True
    assert f"{REFRESH_COOKIE}=;" in response.headers["Set-Cookie"]
    assert client.get_cookie(REFRESH_COOKIE, path=COOKIE_PATH) is None
    for token in (tab_one, tab_two):
        refused = client.get("/api/auth/me", headers=bearer(token))
        assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "token_revoked"
    assert new_tab(client).status_code == 401


def test_a_stolen_refresh_cookie_is_refused_after_sign_out(client, auth):
    sign_in(client, auth)
    cookie = client.get_cookie(REFRESH_COOKIE, path=COOKIE_PATH).value
    client.delete("/api/auth/session", headers=ORIGIN)
    client.set_cookie(REFRESH_COOKIE, cookie, path=COOKIE_PATH)
    response = new_tab(client)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "token_revoked"
    assert client.get_cookie(REFRESH_COOKIE, path=COOKIE_PATH) is None  # cleared by the refusal


def test_sign_out_closes_the_other_tabs_socket(app, client, auth):
    sign_in(client, auth)
    other_tab = new_tab(client).get_json()["access_token"]
    sio = socketio.test_client(app, auth={"token": other_tab})
    assert sio.is_connected()
    assert client.delete("/api/auth/session", headers=ORIGIN).get_json()["closed_connections"] == 1
    assert not sio.is_connected()


def test_sign_out_leaves_other_browsers_and_programs_signed_in(app, auth):
    program = auth.token_for("alice")
    browser_one, browser_two = app.test_client(), app.test_client()
    for browser in (browser_one, browser_two):
        assert (
            browser.post(
                "/api/auth/session", json={"username": "alice", "password": "password123"}, headers=ORIGIN
            ).status_code
            == 200
        )
    browser_one.delete("/api/auth/session", headers=ORIGIN)
    assert new_tab(browser_two).status_code == 200
    assert browser_one.get("/api/auth/me", headers=bearer(program)).status_code == 200


def test_a_refresh_token_cannot_be_used_as_an_access_token_from_the_cookie(client, auth):
    sign_in(client, auth)
    cookie = client.get_cookie(REFRESH_COOKIE, path=COOKIE_PATH).value
    assert client.get("/api/auth/me", headers=bearer(cookie)).status_code == 401


def test_a_misspelt_cookie_setting_refuses_to_start():
    with pytest.raises(ConfigError, match="REFRESH_COOKIE_SECURE"):
        load_config({"ENV_NAME": "testing", "REFRESH_COOKIE_SECURE": "yes"})


def test_a_refresh_that_races_sign_out_leaves_no_live_token(client, auth, monkeypatch):
    sign_in(client, auth)
    real_mint, minted = routes.mint_access_token, []

    def mint_while_signing_out(user, session_jti):
        token = real_mint(user, session_jti)
        minted.append(token)
        # The sign-out commits the session's revocation and lists its tokens right here,
        # before this one is committed: it cannot see it.
        revoke({"jti": session_jti, "exp": time.time() + 3600}, user.id)
        return token

    monkeypatch.setattr(routes, "mint_access_token", mint_while_signing_out)
    response = new_tab(client)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "token_revoked"
    refused = client.get("/api/auth/me", headers=bearer(minted[0]))
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "token_revoked"


def test_production_marks_the_cookie_secure_even_over_plain_http(monkeypatch):
    monkeypatch.delenv("REFRESH_COOKIE_SECURE", raising=False)
    assert load_config({"ENV_NAME": "production", "JWT_SECRET_KEY": "x" * 40})["REFRESH_COOKIE_SECURE"] == "true"
    assert load_config({"ENV_NAME": "development"})["REFRESH_COOKIE_SECURE"] == "auto"


def test_signing_in_again_ends_the_session_the_browser_had(client, auth):
    first = sign_in(client, auth).get_json()["access_token"]
    auth.create_user("bob")
    again = client.post("/api/auth/session", json={"username": "bob", "password": "password123"}, headers=ORIGIN)
    assert again.status_code == 200
    assert client.get("/api/auth/me", headers=bearer(first)).get_json()["error"]["code"] == "token_revoked"
    assert new_tab(client).get_json()["user"]["username"] == "bob"
