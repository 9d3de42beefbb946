"""Shared fixtures: an app on a fresh SQLite file, its clients, and logged-in users."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

os.environ.setdefault("HERALD_ENV", "testing")

from tests.helpers import app_for_tests  # noqa: E402


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The in-process app on a fresh schema (see :func:`app_for_tests`)."""
    with app_for_tests(tmp_path) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """HTTP test client."""
    return app.test_client()


class AuthActions:
    """Create users and log them in through the real endpoint."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self._app = app
        self._client = client

    def create_user(self, username: str, password: str = "password123") -> int:
        from app.cli import create_user

        with self._app.app_context():
            return create_user(username, password).id

    def login(self, username: str, password: str = "password123") -> dict[str, Any]:
        response = self._client.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def token_for(self, username: str) -> str:
        self.create_user(username)
        return str(self.login(username)["access_token"])

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(app: Flask, client: FlaskClient) -> AuthActions:
    """User helper for the current app."""
    return AuthActions(app, client)
