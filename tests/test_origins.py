"""The origin policy shared by Socket.IO and plain WebSocket handshakes."""

from __future__ import annotations

import pytest

from app.realtime.origins import origin_allowed, socketio_origin_check

ENVIRON = {"wsgi.url_scheme": "http", "HTTP_HOST": "herald.local:5000"}


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        (None, [], True),  # a program, not a browser
        ("http://herald.local:5000", [], True),  # our own page
        ("http://herald.local:5000", ["http://dashboard.example"], True),  # still our own with a list
        ("http://dashboard.example", ["http://dashboard.example"], True),
        ("http://evil.example", ["http://dashboard.example"], False),
        ("http://evil.example", [], False),
        ("http://evil.example", ["*"], True),
    ],
)
def test_origin_policy(origin, allowed, expected):
    assert origin_allowed(origin, ENVIRON, allowed) is expected


def test_socketio_handshake_from_a_foreign_origin_is_refused(client):
    response = client.get("/socket.io/?EIO=4&transport=polling", headers={"Origin": "http://evil.example"})
    assert response.status_code == 400


def test_socketio_handshake_from_our_own_origin_is_served_with_a_list_configured(app, client):
    app.extensions["socketio"].server.eio.cors_allowed_origins = socketio_origin_check(["http://dashboard.example"])
    response = client.get("/socket.io/?EIO=4&transport=polling", headers={"Origin": "http://localhost"})
    assert response.status_code == 200
