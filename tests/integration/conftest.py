"""The real server (``python wsgi.py``) as a subprocess on a free loopback port.

The async mode comes from ``SOCKETIO_ASYNC_MODE`` (``eventlet`` by default; CI runs this
folder again under ``gevent``). The engines come from ``HERALD_TEST_ENGINES``: ``sqlite``
(default: an SQLite file per test, no message queue) or ``postgres-redis`` (a fresh
PostgreSQL database per test, copied from a migrated template, and the real Redis as
``MESSAGE_QUEUE_URL`` with a channel of its own per test).
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.engines import EngineUnavailable, PostgresServer, RedisServer
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]

ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE", "eventlet")
#: ``sqlite`` or ``postgres-redis``: what ``launch()`` gives each test's server.
ENGINES = os.environ.get("HERALD_TEST_ENGINES", "sqlite")
if ENGINES not in {"sqlite", "postgres-redis"}:
    raise RuntimeError(f"HERALD_TEST_ENGINES must be sqlite or postgres-redis, got {ENGINES!r}")
PASSWORD = "password123"
#: How long after a killed server restarts its jobs may stay active. On SQLite (one process
#: by design) start-up settles them at once; on PostgreSQL another live process may hold
#: them, so they are settled once their lease (4 s here) expires, at the next beat (1 s).
KILLED_JOBS_SETTLE_WITHIN = 0.5 if ENGINES == "sqlite" else 8.0
#: The session's shared servers when ``ENGINES`` is ``postgres-redis`` (set by ``_engines``).
_shared: dict[str, Any] = {}


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
        from app.extensions import db

        db.engine.dispose()  # no connection left behind (a PostgreSQL template must have none)


def fresh_sqlite_database(path: Path) -> str:
    """A migrated SQLite database with users alice and bob at ``path``, copied from one
    prepared per test session (migrating and hashing two passwords per test cost more
    than many a test); returns its URL."""
    template: Path | None = _shared.get("sqlite_template")
    if template is None:
        folder = Path(tempfile.mkdtemp(prefix="herald-template-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "herald.db"
        prepare_database(f"sqlite:///{template}", ["alice", "bob"])
        assert not Path(f"{template}-wal").exists(), "the template's last connection left its WAL behind"
        _shared["sqlite_template"] = template
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


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

    def command(self) -> list[str]:
        """The child's command line."""
        return [sys.executable, self.script]

    def worker_id(self) -> str:
        """The id this process's runner holds leases under (from ``/health``)."""
        return str(requests.get(self.url + "/health", timeout=5).json()["worker_id"])

    def start(self, timeout: float = 60.0, *, healthy: bool = True) -> None:
        """Start and wait for ``/health``: a 200, or with ``healthy=False`` any answer (a 503)."""
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/health", timeout=1).ok or not healthy:
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

    def history(self, token: str, job_id: int) -> list[dict[str, Any]]:
        """The job's stored durable events (REST), as every transport must have delivered them."""
        return list(self.api("GET", f"/api/jobs/{job_id}/events?limit=10000", token).json()["events"])

    def wait_ended(self, token: str, job_id: int, timeout: float = 90) -> dict[str, Any]:
        """The job once it has ended (completed, failed or cancelled)."""

        def ended() -> dict[str, Any] | None:
            job = self.api("GET", f"/api/jobs/{job_id}", token).json()["job"]
            return job if job["status"] in ("completed", "failed", "cancelled") else None

        return dict(wait_for(ended, timeout=timeout, interval=0.1))

    def submit(self, token: str, kind: str = "simulate", **params: Any) -> dict[str, Any]:
        response = self.api("POST", "/api/jobs", token, json={"kind": kind, "params": params})
        assert response.status_code == 202, response.text
        return dict(response.json()["job"])


def launch(tmp_path: Path, server_class: type[ServerProcess] = ServerProcess, **env: str) -> Iterator[Any]:
    """Fixture body: a fresh database (users alice and bob) and a server with extra environment.

    The database and message queue follow ``HERALD_TEST_ENGINES`` (see the module docstring).
    """
    engines: dict[str, str] = {}
    postgres: PostgresServer | None = _shared.get("postgres")
    database = None
    if ENGINES == "postgres-redis":
        assert postgres is not None, "the _engines fixture starts PostgreSQL and Redis first"
        database = postgres.create_database(template=_shared["template"])
        engines = {
            "DATABASE_URL": postgres.url(database),
            "MESSAGE_QUEUE_URL": _shared["redis"].url(),
            "MESSAGE_QUEUE_CHANNEL": f"herald-test-{uuid.uuid4().hex[:12]}",
            # Several processes may share PostgreSQL: a killed server's jobs wait for its lease.
            "JOB_LEASE_SECONDS": "4",
            "WORKER_HEARTBEAT_INTERVAL": "1",
        }
    else:
        engines = {"DATABASE_URL": fresh_sqlite_database(tmp_path / "herald.db")}
    proc = server_class(
        tmp_path,
        {
            **engines,
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "ARTIFACT_DIR": str(tmp_path / "artifacts"),
            **env,
        },
    )
    proc.start()
    _running.append(proc)
    yield proc
    _running.remove(proc)
    proc.stop()
    if postgres is not None and database is not None:
        postgres.drop_database(database)


#: Servers started by ``launch()`` that are still up (their log goes with a failure).
_running: list[ServerProcess] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report carries the end of each running server's log (tracebacks)."""
    report = yield
    if report.failed:
        for proc in _running:
            tail = proc.log_path.read_text(errors="replace")[-4000:] if proc.log_path.exists() else ""
            report.sections.append((f"server log {proc.log_path}", tail))
    return report


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` for the whole session (skips when it is not installed)."""
    try:
        redis = RedisServer()
    except EngineUnavailable as exc:
        _unavailable(str(exc))
    yield redis.start()
    redis.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 cluster for the whole session (skips when it is not installed)."""
    try:
        postgres = PostgresServer()
    except EngineUnavailable as exc:
        _unavailable(str(exc))
    yield postgres.start()
    postgres.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """A migrated database with users alice and bob; each test gets a copy of it."""
    name = postgres_server.create_database("herald_template")
    prepare_database(postgres_server.url(name), ["alice", "bob"])
    return name


@pytest.fixture
def postgres_database(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """The URL of a fresh, migrated PostgreSQL database (users alice and bob), dropped after."""
    name = postgres_server.create_database(template=postgres_template)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture(scope="session", autouse=True)
def _engines(request: pytest.FixtureRequest) -> None:
    """With ``HERALD_TEST_ENGINES=postgres-redis``, start the shared servers for ``launch()``."""
    if ENGINES == "postgres-redis":
        _shared["postgres"] = request.getfixturevalue("postgres_server")
        _shared["redis"] = request.getfixturevalue("redis_server")
        _shared["template"] = request.getfixturevalue("postgres_template")


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """A socket a test leaves unclosed fails *that* test (warnings are errors), not
    whichever later test the garbage collector happens to run in."""
    yield
    gc.collect()


def _unavailable(reason: str) -> None:
    # Asked for explicitly, a missing engine is an error; otherwise its tests skip.
    if ENGINES == "postgres-redis":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server with users alice and bob."""
    yield from launch(tmp_path)
