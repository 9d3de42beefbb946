"""The publish path stays lean however many watch: one encode per event, no per-watcher SQL.

Behaviour, not timing (``bench/`` measures it): the SQL a durable event runs and the
number of packet encodes do not grow with the number of subscribers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from app import json_text
from app.extensions import db, socketio
from app.models import Job
from app.realtime.pipeline import pipeline

WATCHERS = 12


@pytest.fixture
def owned_job(app, auth) -> tuple[int, str]:
    """A stored job of alice's (nothing runs it) and alice's token."""
    token = auth.token_for("alice")
    with app.app_context():
        job = Job(kind="simulate", owner_id=1, params={})
        db.session.add(job)
        db.session.commit()
        return job.id, token


def watchers(app, token: str, count: int) -> list[Any]:
    clients = [socketio.test_client(app, auth={"token": token}) for _ in range(count)]
    for client in clients:
        assert client.emit("subscribe", {"all": True}, callback=True)["ok"] is True
        client.get_received()
    return clients


@pytest.fixture
def sql_log(app) -> Iterator[list[str]]:
    """Statements run while the fixture is active (by any thread: the journal's writer
    runs the publish's)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield statements
    event.remove(engine, "before_cursor_execute", record)


def publish_log_line(app, job_id: int, text: str) -> None:
    with app.app_context():
        pipeline.publish(job_id, "job_log", {"level": "info", "message": text})
    assert pipeline.outbox.drain()


def test_durable_event_runs_the_same_sql_for_one_or_many_watchers(app, owned_job, sql_log):
    job_id, token = owned_job
    one = watchers(app, token, 1)
    sql_log.clear()  # connecting looked the user up; only the publish counts
    publish_log_line(app, job_id, "to one")
    with_one = list(sql_log)
    many = watchers(app, token, WATCHERS - 1)
    sql_log.clear()
    publish_log_line(app, job_id, "to many")
    assert sql_log == with_one and len(with_one) <= 4  # update+returning, insert (and BEGIN/COMMIT at most)
    for client in one + many:
        lines = [r["args"][0] for r in client.get_received() if r["name"] == "job_log"]
        assert lines[-1]["data"]["message"] == "to many"


def test_event_is_encoded_once_for_all_watchers(app, owned_job, monkeypatch):
    job_id, token = owned_job
    clients = watchers(app, token, WATCHERS)
    encodes: list[int] = []
    original = json_text.dumps

    def counting_dumps(value: Any, **kwargs: Any) -> str:
        if isinstance(value, list) and value and value[0] == "job_log":
            encodes.append(1)
        return original(value, **kwargs)

    monkeypatch.setattr(json_text, "dumps", counting_dumps)
    publish_log_line(app, job_id, "once")
    assert len(encodes) == 1
    assert all(any(r["name"] == "job_log" for r in client.get_received()) for client in clients)
