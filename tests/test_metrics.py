"""``/metrics``: Prometheus text, process state read at scrape time, never a 500."""

from __future__ import annotations

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from app import observability
from app.extensions import socketio
from tests.helpers import break_sqlite_database, wait_for

#: Every metric the issue asks for, under the name a scrape shows (counters end ``_total``).
EXPECTED = {
    "herald_events_committed_total",
    "herald_events_refused_total",
    "herald_commit_seconds",
    "herald_commit_batch_events",
    "herald_publish_seconds",
    "herald_progress_ticks_total",
    "herald_messages_published_total",
    "herald_messages_delivered_total",
    "herald_connections_dropped_total",
    "herald_resumes_total",
    "herald_connections",
    "herald_subscriptions",
    "herald_jobs",
    "herald_database_up",
    "herald_scrape_errors_total",
}


def scrape(client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of one scrape (which must be a 200), plus
    ``("declared:<name>", ())`` for each metric declared (a labelled one may have no sample)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = response.get_data(as_text=True)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            samples.setdefault(("declared:" + line.split()[2], ()), 0.0)
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def names(samples) -> set[str]:
    """The metric names a scrape declared."""
    return {name.removeprefix("declared:") for name, _ in samples if name.startswith("declared:")}


@pytest.fixture(autouse=True)
def _fresh_job_counts(monkeypatch):
    """Each scrape reads the database (the one-second reuse is tested on its own)."""
    monkeypatch.setattr(observability, "JOBS_CACHE_SECONDS", 0.0)


def test_metrics_lists_every_herald_metric_in_prometheus_text(client):
    samples = scrape(client)
    assert EXPECTED <= names(samples), EXPECTED - names(samples)
    assert value(samples, "herald_database_up") == 1
    assert ("herald_resumes_total", (("result", "complete"),)) in samples
    assert ("herald_resumes_total", (("result", "resync"),)) in samples
    assert "herald_message_queue_up" not in names(samples)  # no queue configured
    assert ("herald_scrape_errors_total", (("part", "jobs"),)) in samples  # every part has a series
    assert not [name for name in names(samples) if name.endswith("_created")]


def test_jobs_by_status_and_kind_come_from_one_query_with_zeros_for_the_rest(app, client, auth):
    from app.extensions import db
    from app.models import Job

    owner = auth.create_user("alice")
    with app.app_context():
        db.session.add_all(
            [Job(kind="simulate", owner_id=owner, status=status) for status in ("completed", "completed", "failed")]
            + [Job(kind="data_import", owner_id=owner, status="cancelled")]
        )
        db.session.commit()
    samples = scrape(client)
    assert value(samples, "herald_jobs", status="completed", kind="simulate") == 2
    assert value(samples, "herald_jobs", status="failed", kind="simulate") == 1
    assert value(samples, "herald_jobs", status="cancelled", kind="data_import") == 1
    assert ("herald_jobs", (("kind", "simulate"), ("status", "running"))) in samples  # a zero, not missing


def test_connections_subscriptions_and_resumes_follow_socketio_clients(app, client, auth):
    token = auth.token_for("alice")
    before = scrape(client)
    job_id = client.post(
        "/api/jobs", json={"kind": "simulate", "params": {"steps": 2, "interval": 0}}, headers=auth.headers(token)
    ).get_json()["job"]["id"]
    sio = socketio.test_client(app, auth={"token": token})
    assert sio.emit("subscribe", {"job_id": job_id, "last_seq": 0}, callback=True)["ok"] is True
    during = scrape(client)
    assert (
        value(during, "herald_connections", transport="socketio")
        == value(before, "herald_connections", transport="socketio") + 1
    )
    assert (
        value(during, "herald_subscriptions", transport="socketio")
        == value(before, "herald_subscriptions", transport="socketio") + 1
    )
    assert (
        value(during, "herald_resumes_total", result="complete")
        == value(before, "herald_resumes_total", result="complete") + 1
    )
    sio.disconnect()
    after = scrape(client)
    assert value(after, "herald_connections", transport="socketio") == value(
        before, "herald_connections", transport="socketio"
    )
    assert value(after, "herald_subscriptions", transport="socketio") == value(
        before, "herald_subscriptions", transport="socketio"
    )


def test_a_subscription_without_last_seq_is_no_resume(app, client, auth):
    token = auth.token_for("alice")
    job_id = client.post(
        "/api/jobs", json={"kind": "simulate", "params": {"steps": 1, "interval": 0}}, headers=auth.headers(token)
    ).get_json()["job"]["id"]
    before = value(scrape(client), "herald_resumes_total", result="complete")
    sio = socketio.test_client(app, auth={"token": token})
    assert sio.emit("subscribe", {"job_id": job_id}, callback=True)["ok"] is True
    assert value(scrape(client), "herald_resumes_total", result="complete") == before
    sio.disconnect()


def test_counters_move_while_a_job_runs(client, auth):
    token = auth.token_for("alice")
    before = scrape(client)
    job_id = client.post(
        "/api/jobs", json={"kind": "simulate", "params": {"steps": 5, "interval": 0.01}}, headers=auth.headers(token)
    ).get_json()["job"]["id"]
    wait_for(
        lambda: (
            client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]["status"] == "completed"
        ),
        timeout=20,
    )
    after = scrape(client)
    assert value(after, "herald_events_committed_total") > value(before, "herald_events_committed_total")
    assert value(after, "herald_commit_seconds_count") > value(before, "herald_commit_seconds_count")
    assert value(after, "herald_messages_published_total", kind="durable") > value(
        before, "herald_messages_published_total", kind="durable"
    )
    assert value(after, "herald_jobs", status="completed", kind="simulate") == 1


def test_a_database_outage_is_a_zero_gauge_not_a_failed_scrape(app, client):
    before = scrape(client)
    break_sqlite_database(app)
    samples = scrape(client)
    assert value(samples, "herald_database_up") == 0
    assert (
        value(samples, "herald_scrape_errors_total", part="jobs")
        == value(before, "herald_scrape_errors_total", part="jobs") + 1
    )
    assert not [key for key in samples if key[0] == "herald_jobs"]
    assert "herald_connections" in names(samples)  # the rest is still there


def test_a_failing_part_is_counted_and_the_rest_still_served(client, monkeypatch):
    before = scrape(client)

    def broken() -> dict[str, int]:
        raise RuntimeError("registry gone")

    monkeypatch.setattr(observability, "connections_by_transport", broken)
    samples = scrape(client)
    assert "herald_connections" not in names(samples)
    assert (
        value(samples, "herald_scrape_errors_total", part="connections")
        == value(before, "herald_scrape_errors_total", part="connections") + 1
    )
    assert value(samples, "herald_database_up") == 1


def test_message_queue_health_is_a_gauge_when_one_is_configured(tmp_path):
    from app import create_app

    app = create_app(
        {
            "ENV_NAME": "testing",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'q.db'}",
            "SOCKETIO_ASYNC_MODE": "threading",
            "MESSAGE_QUEUE_URL": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    )
    samples = scrape(app.test_client())
    assert ("herald_message_queue_up", ()) in samples and value(samples, "herald_message_queue_up") == 0


def test_metrics_token_is_required_when_configured(tmp_path):
    from app import create_app

    app = create_app(
        {
            "ENV_NAME": "testing",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 't.db'}",
            "SOCKETIO_ASYNC_MODE": "threading",
            "METRICS_TOKEN": "scraper-secret",
        }
    )
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic scraper-secret"}).status_code == 401
    scrape(client, Authorization="Bearer scraper-secret")


def test_the_jobs_query_is_cut_off_on_sqlite(app, auth):
    """SQLite holds the whole process while it reads: the count gives up at its deadline."""
    from sqlalchemy import insert

    from app.extensions import db
    from app.models import Job

    owner = auth.create_user("bulk")
    with app.app_context():
        rows = [{"kind": f"k{i % 50}", "owner_id": owner, "status": "completed", "params": {}} for i in range(20_000)]
        db.session.execute(insert(Job), rows)
        db.session.commit()
        assert sum(observability.count_jobs().values()) == 20_000
        with pytest.raises(OperationalError, match="interrupted"):
            observability.count_jobs(timeout_ms=0)
        assert sum(observability.count_jobs().values()) == 20_000  # the connection is fine afterwards


def test_job_counts_are_reused_for_a_second(app, monkeypatch):
    monkeypatch.setattr(observability, "JOBS_CACHE_SECONDS", 60.0)
    calls = []
    monkeypatch.setattr(observability, "count_jobs", lambda: calls.append(1) or {})
    collector = observability.StateCollector()
    with app.app_context():
        list(collector.collect())
        list(collector.collect())
    assert calls == [1]


def test_the_collector_is_registered_once_however_many_apps(app, tmp_path):
    from prometheus_client import REGISTRY

    from app import create_app

    create_app(
        {
            "ENV_NAME": "testing",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
            "SOCKETIO_ASYNC_MODE": "threading",
        }
    )
    collectors = [c for c in REGISTRY._collector_to_names if isinstance(c, observability.StateCollector)]
    assert len(collectors) == 1
