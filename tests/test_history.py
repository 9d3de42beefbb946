"""History retention: what a trim deletes, and what a resume from a trimmed position gets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.config import Config, ConfigError
from app.extensions import db, socketio
from app.jobs import history
from app.models import Job, JobEvent, User, utcnow


def stored_job(owner: str, events: int, *, age: timedelta = timedelta(0)) -> int:
    """A completed job with ``events`` durable events, each ``age`` old."""
    user = db.session.query(User).filter_by(username=owner).one()
    job = Job(kind="simulate", owner_id=user.id, params={}, status="completed", last_seq=events)
    db.session.add(job)
    db.session.flush()
    moment = utcnow() - age
    db.session.add_all(
        JobEvent(job_id=job.id, seq=seq, type="job_log", data={"line": seq}, created_at=moment)
        for seq in range(1, events + 1)
    )
    db.session.commit()
    return job.id


def kept_seqs(job_id: int) -> list[int]:
    return list(db.session.scalars(db.select(JobEvent.seq).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))


def test_a_trim_keeps_the_newest_events_of_each_job(app, auth):
    auth.token_for("alice")
    with app.app_context():
        long_job, short_job = stored_job("alice", 50), stored_job("alice", 5)
        assert history.trim(db.engine, history.Retention(max_events_per_job=10), now=utcnow()) == 40
        assert kept_seqs(long_job) == list(range(41, 51)) and kept_seqs(short_job) == [1, 2, 3, 4, 5]
        assert history.first_kept_seq(long_job) == 41
        assert history.trim(db.engine, history.Retention(max_events_per_job=10), now=utcnow()) == 0


def test_a_trim_deletes_events_older_than_the_age_bound(app, auth):
    auth.token_for("alice")
    with app.app_context():
        old, recent = stored_job("alice", 3, age=timedelta(days=40)), stored_job("alice", 3, age=timedelta(days=1))
        retention = history.Retention(max_age=timedelta(days=30))
        assert history.trim(db.engine, retention, now=utcnow()) == 3
        assert kept_seqs(old) == [] and history.first_kept_seq(old) is None
        assert kept_seqs(recent) == [1, 2, 3]
        assert db.session.get(Job, old).last_seq == 3  # the job itself stays


def test_keeping_everything_deletes_nothing(app, auth):
    auth.token_for("alice")
    with app.app_context():
        job_id = stored_job("alice", 5, age=timedelta(days=3650))
        assert history.Retention().keeps_everything
        assert history.trim(db.engine, history.Retention(), now=utcnow()) == 0
        assert kept_seqs(job_id) == [1, 2, 3, 4, 5]


def test_retention_comes_from_the_settings():
    retention = history.Retention.from_config({"HISTORY_MAX_EVENTS_PER_JOB": 7, "HISTORY_MAX_AGE_DAYS": 0.5})
    assert retention == history.Retention(7, timedelta(hours=12))
    assert history.Retention.from_config({"HISTORY_MAX_EVENTS_PER_JOB": 0, "HISTORY_MAX_AGE_DAYS": 0}).keeps_everything


@pytest.mark.parametrize(
    ("setting", "value"),
    [("HISTORY_MAX_EVENTS_PER_JOB", -1), ("HISTORY_MAX_AGE_DAYS", -1), ("HISTORY_TRIM_INTERVAL", 0)],
)
def test_impossible_retention_settings_are_refused(monkeypatch, setting, value):
    config = Config()
    monkeypatch.setattr(config, setting, value)
    with pytest.raises(ConfigError, match=setting):
        config.check_jobs()


def test_resuming_below_the_kept_history_gets_resync_and_the_rest_replays(app, client, auth):
    token = auth.token_for("alice")
    with app.app_context():
        job_id = stored_job("alice", 30)
        history.trim(db.engine, history.Retention(max_events_per_job=10), now=utcnow())
    sio = socketio.test_client(app, auth={"token": token})

    def of_job() -> list[dict]:
        return [r["args"][0] for r in sio.get_received() if r["args"][0].get("job_id") == job_id]

    ack = sio.emit("subscribe", {"job_id": job_id, "last_seq": 5}, callback=True)
    assert ack["ok"] is True and ack["resumed"] == "resync"
    received = of_job()
    assert [m["type"] for m in received] == ["resync"]
    assert received[0]["data"]["last_seq"] == 30 and received[0]["data"]["job"]["id"] == job_id

    ack = sio.emit("subscribe", {"job_id": job_id, "last_seq": 25}, callback=True)
    assert ack["resumed"] == "complete"
    assert [m["seq"] for m in of_job()] == [26, 27, 28, 29, 30]

    ack = sio.emit("subscribe", {"job_id": job_id, "last_seq": 31}, callback=True)
    assert ack["resumed"] == "resync"  # ahead of the head: not a position of this job

    page = client.get(f"/api/jobs/{job_id}/events?after=5", headers=auth.headers(token)).get_json()
    assert page["first_seq"] == 21 and page["complete"] is False and page["events"][0]["seq"] == 21
    page = client.get(f"/api/jobs/{job_id}/events?after=20", headers=auth.headers(token)).get_json()
    assert page["complete"] is True


def test_the_events_page_is_each_event_s_wire_message(app, client, auth):
    """The page splices each event's stored JSON in as text: it must read back exactly as
    the event's own message (unicode, nesting, numbers, nulls, escapes)."""
    token = auth.token_for("alice")
    datas = [
        {"message": "naïve — ünïcode ✓ \u2028", "level": "info"},
        {"nested": {"list": [1, 2.5, None, True], "quote": 'say "hi"\\n'}},
        {},
    ]
    with app.app_context():
        job_id = stored_job("alice", 0)
        for seq, data in enumerate(datas, start=1):
            db.session.add(JobEvent(job_id=job_id, seq=seq, type="job_log", data=data, created_at=utcnow()))
        db.session.get(Job, job_id).last_seq = len(datas)
        db.session.commit()
        events = db.session.scalars(db.select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))
        expected = [event.to_message() for event in events]
    answer = client.get(f"/api/jobs/{job_id}/events?after=0", headers=auth.headers(token))
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    body = answer.get_json()
    assert body["events"] == expected
    assert {k: body[k] for k in ("job_id", "last_seq", "first_seq", "complete")} == {
        "job_id": job_id,
        "last_seq": 3,
        "first_seq": 1,
        "complete": True,
    }
