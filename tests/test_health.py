"""/health (liveness) and /ready (readiness) report the database and the message queue apart;
the queue is probed, cached."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import pytest

from app.config import database_uri
from app.realtime.queue_health import QueueProbe, log_queue_at_start, redacted
from tests.helpers import break_sqlite_database


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _app_with_queue(tmp_path: Path, url: str, *, migrate: bool = True):
    from flask_migrate import upgrade

    from app import create_app

    app = create_app(
        {
            "ENV_NAME": "testing",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.db'}",
            "SOCKETIO_ASYNC_MODE": "threading",
            "MESSAGE_QUEUE_URL": url,
        }
    )
    if migrate:  # (alembic's logging set-up replaces caplog's handler)
        with app.app_context():
            upgrade(directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    return app


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u@h/db?sslmode=require", "postgresql+psycopg2://u@h/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_bare_postgres_urls_use_psycopg2(given, expected):
    assert database_uri(given) == expected


def test_create_app_maps_a_postgres_url_to_psycopg2():
    from app import create_app

    app = create_app(
        {
            "ENV_NAME": "testing",
            "SQLALCHEMY_DATABASE_URI": "postgres://u@127.0.0.1/x",
            "SOCKETIO_ASYNC_MODE": "threading",
        }
    )
    with app.app_context():
        from app.extensions import db

        assert db.engine.dialect.driver == "psycopg2"


def test_health_is_ok_with_database_ok_and_queue_disabled(client):
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["database"] == {"status": "ok"}
    assert body["message_queue"] == {"status": "disabled"}
    assert body["async_mode"] == "threading" and "socketio" in body["connections"] and body["worker_id"]


def test_ready_is_200_with_database_ok_and_queue_disabled(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "database": {"status": "ok"},
        "message_queue": {"status": "disabled"},
    }


def test_an_unreachable_queue_is_503_on_ready_and_degraded_but_alive_on_health(tmp_path):
    app = _app_with_queue(tmp_path, f"redis://127.0.0.1:{_closed_port()}/0")
    client = app.test_client()
    response = client.get("/ready")
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "not_ready"
    assert body["database"] == {"status": "ok"}
    assert body["message_queue"]["status"] == "degraded"
    assert "ConnectionError" in body["reasons"]["message_queue"] and "database" not in body["reasons"]
    health = client.get("/health")
    assert health.status_code == 200  # liveness: restarting the process would not bring Redis back
    assert health.get_json()["status"] == "degraded"
    assert "ConnectionError" in health.get_json()["message_queue"]["reason"]


def test_a_lost_database_is_503_on_ready_and_degraded_but_alive_on_health(app, client):
    break_sqlite_database(app)
    response = client.get("/ready")
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "not_ready" and body["reasons"]["database"]
    assert body["database"]["status"] == "degraded" and body["database"]["reason"]
    assert body["message_queue"] == {"status": "disabled"}
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["status"] == "degraded"
    assert health.get_json()["database"]["status"] == "degraded"


def test_queue_probe_pings_at_most_once_a_second(monkeypatch):
    probe = QueueProbe("redis://127.0.0.1:1/0")
    calls = []
    monkeypatch.setattr(probe, "_ping", lambda: calls.append(1) or {"status": "ok", "url": probe.url})
    assert probe.check()["status"] == "ok"
    assert probe.check()["status"] == "ok"
    assert len(calls) == 1
    probe._checked_at -= 2
    probe.check()
    assert len(calls) == 2


def test_queue_probe_says_when_the_redis_package_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    result = QueueProbe("redis://127.0.0.1:6379/0").check()
    assert result["status"] == "degraded"
    assert "redis package is not installed" in result["reason"]


def test_unreachable_queue_is_one_clear_error_line_at_start(tmp_path, caplog):
    port = _closed_port()
    app = _app_with_queue(tmp_path, f"redis://:secret@127.0.0.1:{port}/0", migrate=False)
    with caplog.at_level(logging.INFO, logger="herald"):
        log_queue_at_start(app)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert f"message queue redis://:***@127.0.0.1:{port}/0 is unusable" in errors[0]
    assert "secret" not in errors[0]


def test_redacted_hides_only_the_password():
    assert redacted("redis://user:pw@host:6380/2") == "redis://user:***@host:6380/2"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"
