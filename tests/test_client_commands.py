"""Client commands (``flask --app wsgi watch``) need none of the server's configuration."""

from __future__ import annotations

import pytest

from app.apitests.cli import progress_text
from app.cli import flask_command, runs_client_command
from app.config import ConfigError, load_config


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["/venv/bin/flask", "--app", "wsgi", "watch", "42"], "watch"),
        (["flask", "-A", "wsgi", "-e", ".env", "watch", "42", "--server", "http://x"], "watch"),
        (["flask", "--app=wsgi", "--debug", "db", "upgrade"], "db"),
        (["flask", "--app", "wsgi"], None),
    ],
)
def test_the_command_of_a_flask_command_line(argv, command):
    assert flask_command(argv) == command


def test_only_flask_watch_is_a_client_command():
    assert runs_client_command(["/venv/bin/flask", "--app", "wsgi", "watch", "1", "--server", "http://x"])
    assert runs_client_command(["/usr/lib/python3/site-packages/flask/__main__.py", "--app", "wsgi", "watch", "1"])
    assert not runs_client_command(["/venv/bin/flask", "--app", "wsgi", "users", "create", "watch"])
    assert not runs_client_command(["wsgi.py"])
    assert not runs_client_command(["gunicorn", "watch"])


def test_production_without_a_secret_refuses_to_serve_but_a_client_command_loads(monkeypatch):
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        load_config({"ENV_NAME": "production", "JWT_SECRET_KEY": None, "SECRET_KEY": None})
    config = load_config({"ENV_NAME": "production", "JWT_SECRET_KEY": None, "SECRET_KEY": None, "CLIENT_ONLY": True})
    assert config["CLIENT_ONLY"] is True and config["JWT_SECRET_KEY"] is None


def test_watch_shows_the_jobs_own_figures_never_a_rate_of_percent():
    tick = {"current": 12400, "total": 40000, "percent": 31.0, "rate": 3521.7, "eta": 79.6, "message": "importing"}
    assert progress_text(tick) == "12,400/40,000 · 3,522/s · ETA 1m 20s · importing"
    assert progress_text({"current": 3, "total": 10, "rate": 2.25, "eta": 3.1}) == "3/10 · 2.2/s · ETA 3s"
    assert progress_text({"percent": 50}) == ""
