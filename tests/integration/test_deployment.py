"""The deployed shape: gunicorn's eventlet worker serving wsgi:app, as in the Dockerfile."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import socketio

from tests.helpers import wait_for
from tests.integration.conftest import PASSWORD, ROOT, free_port, prepare_database


@contextmanager
def gunicorn_server(tmp_path: Path, app: str = "wsgi:app", **settings: str) -> Iterator[str]:
    """gunicorn's eventlet worker as the Dockerfile runs it (production settings), serving
    ``app``; yields its URL once healthy."""
    database_url = f"sqlite:///{tmp_path / 'herald.db'}"
    prepare_database(database_url, ["alice"])
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HERALD_ENV": "production",
        "JWT_SECRET_KEY": "x" * 40,
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **settings,
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with open(tmp_path / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen(
            [gunicorn, "-c", "gunicorn.conf.py", "-k", "eventlet", "-w", "1", app],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url), timeout=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def _login(url: str) -> str:
    response = requests.post(url + "/api/auth/login", json={"username": "alice", "password": PASSWORD}, timeout=10)
    return str(response.json()["access_token"])


@pytest.mark.eventlet_only
def test_gunicorn_eventlet_worker_streams_a_job(tmp_path: Path):
    with gunicorn_server(tmp_path) as url:
        assert requests.get(url + "/health", timeout=5).json()["async_mode"] == "eventlet"
        token = _login(url)
        received: list[dict] = []
        client = socketio.Client(reconnection=False)
        client.on("*", lambda event, message: received.append(message))
        client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        job = requests.post(
            url + "/api/jobs",
            json={"kind": "simulate", "params": {"steps": 5, "interval": 0.02}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["job"]
        client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)
        wait_for(lambda: any(m.get("data", {}).get("status") == "completed" for m in received), timeout=20)
        client.disconnect()


@pytest.mark.eventlet_only
def test_gunicorn_serves_idle_websockets_without_a_greenlet_within_worker_connections(tmp_path: Path):
    """The hub watches idle WebSockets under gunicorn too (``share_gunicorn_eventlet_pool``),
    and each keeps one of the worker's ``worker_connections`` slots until it closes."""
    cap = 12
    app = "tests.integration.serve_with_test_kinds:app"  # wsgi:app plus /test/greenlets
    with gunicorn_server(tmp_path, app, MAX_CONNECTIONS=str(cap), MAX_CONNECTIONS_PER_USER="0") as url:
        token = _login(url)

        def live() -> int:
            return int(requests.get(url + "/test/greenlets", timeout=10).json()["greenlets"])

        before = live()
        clients = []
        for _ in range(cap - 1):  # one slot left, for the greenlet count's request
            client = socketio.Client(reconnection=False)
            client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
            assert client.call("ping", {}, timeout=10)["ok"] is True
            clients.append(client)
        assert live() - before <= 5, (before, live())  # none each, and a few in flight
        extra = socketio.Client(reconnection=False)
        extra.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        clients.append(extra)
        # Every slot is taken now (the last by the connection that took the greenlet
        # count's): the next client is accepted by the kernel, not served until one closes.
        late = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            late.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=3)
        clients.pop().disconnect()
        clients.pop().disconnect()
        wait_for(lambda: _connects(url, token), timeout=20)
        for client in clients:
            assert client.call("ping", {}, timeout=10)["ok"] is True
            client.disconnect()


def _connects(url: str, token: str) -> bool:
    client = socketio.Client(reconnection=False)
    try:
        client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        return False
    client.disconnect()
    return True


def test_production_refuses_to_start_without_a_jwt_secret(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin", "HERALD_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "JWT_SECRET_KEY must be set in production" in result.stderr


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=1).ok
    except requests.RequestException:
        time.sleep(0.1)
        return False
