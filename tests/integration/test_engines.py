"""Proofs on the real engines: PostgreSQL waits do not stall sockets, migrations serialise,
and an unusable message queue is said out loud.

These tests start their own PostgreSQL and Redis (``tests/engines.py``) whatever
``HERALD_TEST_ENGINES`` says; they skip when the binaries are missing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import socketio

from tests.engines import PostgresServer, RedisServer, free_port
from tests.helpers import wait_for

from .clients import Recorder
from .conftest import ASYNC_MODE, ENGINES, ROOT, ServerProcess

#: How long the test holds the job's row lock.
LOCK_SECONDS = 5.0
#: Slowest Socket.IO ping round trip allowed while a job waits on that lock.
PING_BUDGET = 0.100


def _server(tmp_path: Path, **env: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path, {"UPLOAD_DIR": str(tmp_path / "uploads"), "ARTIFACT_DIR": str(tmp_path / "artifacts"), **env}
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def pg_server(tmp_path: Path, postgres_database: str, redis_server: RedisServer) -> Iterator[ServerProcess]:
    """A server on a fresh PostgreSQL database and the real Redis."""
    yield from _server(tmp_path, DATABASE_URL=postgres_database, MESSAGE_QUEUE_URL=redis_server.url())


def _waiting_on_a_lock(postgres: PostgresServer, database: str) -> int:
    """How many sessions of ``database`` wait on a lock right now."""
    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (database,)
            )
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def test_a_job_waiting_on_a_row_lock_does_not_stall_socketio(pg_server, postgres_server, postgres_database):
    """Another session holds the job's row for 5 s; pings on the same process stay fast."""
    database = postgres_database.rsplit("/", 1)[1]
    token = pg_server.login("alice")
    job = pg_server.submit(token, steps=400, interval=0.03)  # ~12 s of progress, persisted every 1 s
    wait_for(lambda: pg_server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]["status"] == "running")
    rec = Recorder(pg_server, token)
    rec.client.call("ping", {"t": 0}, timeout=5)  # warm: the connection is established

    holder = postgres_server.connect(database, autocommit=False)
    rtts: list[float] = []
    lock_waits: list[int] = []
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job["id"],))
        held_until = time.monotonic() + LOCK_SECONDS
        next_probe = time.monotonic()
        while time.monotonic() < held_until:
            started = time.perf_counter()
            try:
                assert rec.client.call("ping", {"t": len(rtts)}, timeout=5) == {"ok": True}
            except socketio.exceptions.TimeoutError:
                pytest.fail("a ping got no answer in 5 s while a job waited on a row lock: the process was blocked")
            rtts.append(time.perf_counter() - started)
            if time.monotonic() >= next_probe:
                lock_waits.append(_waiting_on_a_lock(postgres_server, database))
                next_probe = time.monotonic() + 0.25
            time.sleep(0.02)
    finally:
        holder.rollback()
        holder.close()
    rec.close()

    assert max(lock_waits) >= 1, "the server never waited on the row lock: the test proved nothing"
    assert len(rtts) > 50
    print(f"\n{ASYNC_MODE}: {len(rtts)} pings during a {LOCK_SECONDS:.0f} s row lock, max {max(rtts) * 1000:.1f} ms")
    assert max(rtts) < PING_BUDGET, f"slowest ping {max(rtts) * 1000:.0f} ms while a job waited on a row lock"


def _upgrade(database_url: str) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "HERALD_ENV": "testing", "DATABASE_URL": database_url}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _heads(postgres: PostgresServer, database: str) -> list[str]:
    connection = postgres.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version_num FROM alembic_version")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


@pytest.mark.skipif(ASYNC_MODE != "eventlet", reason="no server involved: runs once, in the eventlet pass")
def test_two_db_upgrades_at_once_on_a_fresh_database_both_succeed(postgres_server):
    for attempt in range(5):
        database = postgres_server.create_database(f"herald_race_{attempt}")
        try:
            first, second = _upgrade(postgres_server.url(database)), _upgrade(postgres_server.url(database))
            outputs = [proc.communicate(timeout=120)[0] for proc in (first, second)]
            assert [first.returncode, second.returncode] == [0, 0], f"attempt {attempt}:\n" + "\n".join(outputs)
            assert len(_heads(postgres_server, database)) == 1
        finally:
            postgres_server.drop_database(database)


@pytest.mark.skipif(ASYNC_MODE != "eventlet", reason="no server involved: runs once, in the eventlet pass")
def test_db_upgrade_waits_for_the_migration_lock(postgres_server):
    """The control for the race above: while the lock is held elsewhere, nothing migrates."""
    env_py = (ROOT / "migrations" / "env.py").read_text()
    key = int(env_py.split("MIGRATION_LOCK_KEY = ", 1)[1].split()[0], 0)
    database = postgres_server.create_database()
    holder = postgres_server.connect(database)
    upgrade: subprocess.Popen[str] | None = None
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
        upgrade = _upgrade(postgres_server.url(database))
        time.sleep(4)  # ample for an unhindered upgrade (about 2 s here)
        assert upgrade.poll() is None, "db upgrade ran while another process held the migration lock"
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
        output = upgrade.communicate(timeout=60)[0]
        assert upgrade.returncode == 0, output
        assert len(_heads(postgres_server, database)) == 1
    finally:
        if upgrade is not None and upgrade.poll() is None:
            upgrade.kill()
            upgrade.communicate()
        holder.close()
        postgres_server.drop_database(database)


def test_unreachable_message_queue_is_one_clear_log_line_and_ready_503(tmp_path):
    port = free_port()  # nothing listens there
    from .conftest import prepare_database

    database_url = f"sqlite:///{tmp_path / 'herald.db'}"
    prepare_database(database_url, [])
    queue_url = f"redis://127.0.0.1:{port}/0"
    proc = ServerProcess(tmp_path, {"DATABASE_URL": database_url, "MESSAGE_QUEUE_URL": queue_url})
    proc.start(healthy=False)
    try:
        response = requests.get(proc.url + "/ready", timeout=5)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not_ready" and body["database"] == {"status": "ok"}
        assert body["message_queue"]["status"] == "degraded" and body["message_queue"]["url"] == queue_url
        health = requests.get(proc.url + "/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "degraded"  # alive, not ready
    finally:
        proc.stop()
    lines = [line for line in proc.log_path.read_text().splitlines() if "message queue" in line]
    assert len(lines) == 1, lines
    assert f"ERROR herald: message queue {queue_url} is unusable (ConnectionError" in lines[0]


def test_health_is_ok_on_postgresql_and_redis(pg_server):
    response = requests.get(pg_server.url + "/health", timeout=5)
    body = response.json()
    assert response.status_code == 200
    assert body["database"] == {"status": "ok"}
    assert body["message_queue"]["status"] == "ok"
    assert body["status"] == "ok"


def test_this_pass_uses_the_engines_it_names(server):
    """``HERALD_TEST_ENGINES=postgres-redis`` really puts ``launch()``'s servers on both."""
    queue = requests.get(server.url + "/health", timeout=5).json()["message_queue"]
    expected = "postgresql://" if ENGINES == "postgres-redis" else "sqlite:///"
    assert server.env["DATABASE_URL"].startswith(expected)
    assert queue["status"] == ("ok" if ENGINES == "postgres-redis" else "disabled")
