"""The real server (``python wsgi.py``) as a subprocess on a free loopback port.

The async mode comes from ``SOCKETIO_ASYNC_MODE`` (``eventlet`` by default; CI runs this
folder again under ``gevent``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE", "eventlet")
PASSWORD = "password123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_database(database_url: str, usernames: list[str]) -> None:
    """Migrate a fresh database and create users, in this (unpatched) process."""
    from flask_migrate import upgrade

    from app import create_app
    from app.cli import create_user

    app = create_app(
        {"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url, "SOCKETIO_ASYNC_MODE": "threading"}
    )
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        for name in usernames:
            create_user(name, PASSWORD)


class ServerProcess:
    """One Herald server process; can be killed and started again on the same port."""

    #: What the child runs (relative to the repository root).
    script = "wsgi.py"

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "SOCKETIO_ASYNC_MODE": ASYNC_MODE,
            "HERALD_ENV": "testing",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, self.script], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """``kill -9``: no clean-up runs in the server."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def login(self, username: str) -> str:
        response = requests.post(
            self.url + "/api/auth/login", json={"username": username, "password": PASSWORD}, timeout=10
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def api(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method, self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
        )

    def submit(self, token: str, kind: str = "simulate", **params: Any) -> dict[str, Any]:
        response = self.api("POST", "/api/jobs", token, json={"kind": kind, "params": params})
        assert response.status_code == 202, response.text
        return dict(response.json()["job"])


def launch(tmp_path: Path, server_class: type[ServerProcess] = ServerProcess, **env: str) -> Iterator[Any]:
    """Fixture body: a fresh database (users alice and bob) and a server with extra environment."""
    database_url = f"sqlite:///{tmp_path / 'herald.db'}"
    prepare_database(database_url, ["alice", "bob"])
    proc = server_class(
        tmp_path,
        {
            "DATABASE_URL": database_url,
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "ARTIFACT_DIR": str(tmp_path / "artifacts"),
            **env,
        },
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server with users alice and bob."""
    yield from launch(tmp_path)
