"""The one message shape: its timestamp is the wire's ISO 8601 UTC with milliseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.models.base import isoformat, utcnow
from app.realtime.messages import make_message, now_timestamp

WIRE_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_now_timestamp_has_the_wire_format_and_the_time_of_now():
    before = utcnow()
    stamp = now_timestamp()
    after = utcnow()
    assert WIRE_TIMESTAMP.match(stamp)
    # Milliseconds are cut, not rounded, as isoformat(timespec="milliseconds") cuts them.
    assert _parse(isoformat(before)) <= _parse(stamp) <= after


def test_now_timestamp_stays_right_across_seconds():
    stamps = [now_timestamp() for _ in range(3)]
    assert all(WIRE_TIMESTAMP.match(stamp) for stamp in stamps)
    assert stamps == sorted(stamps)


def test_a_message_of_a_stored_moment_keeps_that_moment():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
    assert make_message("job_log", {}, job_id=1, seq=1, moment=moment)["timestamp"] == "2026-01-02T03:04:05.678Z"
    assert WIRE_TIMESTAMP.match(make_message("job_progress", {}, job_id=1)["timestamp"])


def test_replayed_messages_are_the_stored_events_as_sent_live(app, auth):
    import json

    from sqlalchemy import select

    from app.extensions import db
    from app.jobs.service import job_event_messages, job_event_messages_json
    from app.models import JobEvent
    from app.realtime.pipeline import pipeline
    from tests.helpers import stored_job_context

    owner_id = auth.create_user("alice")
    with app.app_context():
        ctx = stored_job_context(owner_id)
        sent = [pipeline.publish(ctx.job_id, "job_log", {"message": f"line {n}", "n": n}) for n in range(5)]
        stored = db.session.scalars(select(JobEvent).where(JobEvent.job_id == ctx.job_id).order_by(JobEvent.seq))
        assert job_event_messages(ctx.job_id, after=0, limit=100) == [event.to_message() for event in stored] == sent
        assert job_event_messages(ctx.job_id, after=2, limit=2) == sent[2:4]
        assert json.loads(job_event_messages_json(ctx.job_id, after=1)) == sent[1:]
