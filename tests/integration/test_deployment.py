"""The deployed shape: gunicorn's eventlet worker serving wsgi:app, as in the Dockerfile."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import socketio

from tests.helpers import wait_for
from tests.integration.conftest import PASSWORD, ROOT, free_port, prepare_database


@pytest.mark.eventlet_only
def test_gunicorn_eventlet_worker_streams_a_job(tmp_path: Path):
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
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with open(tmp_path / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen(
            [gunicorn, "-c", "gunicorn.conf.py", "-k", "eventlet", "-w", "1", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url), timeout=30)
        assert requests.get(url + "/health", timeout=5).json()["async_mode"] == "eventlet"
        token = requests.post(
            url + "/api/auth/login", json={"username": "alice", "password": PASSWORD}, timeout=10
        ).json()["access_token"]
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
    finally:
        proc.terminate()
        proc.wait(15)


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
