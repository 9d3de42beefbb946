"""Webhooks in-process: REST (validation, secrets, isolation, the document), the target
allowlist, signatures, and the dispatcher turning job events into signed, retried POSTs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app.webhooks.signing import signature_header, verify
from app.webhooks.targets import HostRefused, check_resolved, check_target, normalise_hosts
from tests.helpers import app_for_tests, wait_for
from tests.webhook_receiver import Receiver, SilentReceiver

SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """Herald in threading mode whose webhooks may call 127.0.0.1, with fast retries."""
    with app_for_tests(tmp_path, WEBHOOK_ALLOWED_HOSTS=["127.0.0.1"], WEBHOOK_RETRY_BASE_SECONDS=0.05) as app:
        yield app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def register(client, token: str, **body) -> dict:
    body = {"url": "http://127.0.0.1:9/hook", "events": ["*"], "secret": SECRET, **body}
    response = client.post("/api/webhooks", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def run_simulate(client, token: str, **params) -> dict:
    from tests.data_helpers import run_job

    return run_job(client, token, "simulate", {"steps": 1, "interval": 0, **params})


def dispatch_until(app: Flask, done, timeout: float = 10) -> None:
    """Run the dispatcher's passes (ingest, then due attempts, here) until ``done()``."""
    dispatcher = app.extensions["herald_webhooks"]

    def one_pass():
        with app.app_context():
            dispatcher.ingest()
            dispatcher.send_due(wait=True)
        return done()

    wait_for(one_pass, timeout=timeout, interval=0.05)


def start_dispatcher_cursor(app: Flask) -> None:
    with app.app_context():
        app.extensions["herald_webhooks"].ingest()  # the first pass sets the cursor at the head


# -- REST -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://127.0.0.1/x", "unsupported_scheme"),
        ("not a url", "unsupported_scheme"),
        ("http:///nohost", "invalid_url"),
        ("http://user:pw@127.0.0.1/x", "invalid_url"),
        ("http://127.0.0.1:99999/x", "invalid_url"),
        ("http://10.0.0.5/hook", "host_not_allowed"),
        ("http://localhost/hook", "host_not_allowed"),
        ("https://example.com/hook", "host_not_allowed"),
    ],
)
def test_a_url_that_is_not_allowed_is_a_400_naming_why(client, auth, url, code):
    response = client.post(
        "/api/webhooks", json={"url": url, "events": ["*"]}, headers=auth.headers(auth.token_for("alice"))
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"] and error["details"] == {"path": "url"}


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1/x", "events": ["job.exploded"]},
        {"url": "http://127.0.0.1/x", "events": []},
        {"url": "http://127.0.0.1/x"},
        {"url": "http://127.0.0.1/x", "events": ["*"], "secret": "short"},
        {"url": "http://127.0.0.1/x", "events": ["*"], "extra": 1},
    ],
)
def test_unknown_events_and_bad_fields_are_a_400_validation_error(client, auth, body):
    response = client.post("/api/webhooks", json=body, headers=auth.headers(auth.token_for("alice")))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "validation_error"


def test_the_secret_is_returned_once_and_only_hinted_at_afterwards(client, auth):
    token = auth.token_for("alice")
    response = client.post(
        "/api/webhooks", json={"url": "http://127.0.0.1/a", "events": ["job.failed"]}, headers=auth.headers(token)
    )
    created = response.get_json()
    generated = created["secret"]
    assert len(generated) >= 32 and created["webhook"]["secret_hint"] == "…" + generated[-4:]
    given = register(client, token)
    assert given["secret"] == SECRET
    hook_id = given["webhook"]["id"]
    for path in ("/api/webhooks", f"/api/webhooks/{hook_id}"):
        text = client.get(path, headers=auth.headers(token)).get_data(as_text=True)
        assert SECRET not in text and generated not in text
    assert client.get(f"/api/webhooks/{hook_id}", headers=auth.headers(token)).get_json()["webhook"] == given["webhook"]


def test_a_user_sees_only_their_own_webhooks_and_deliveries(client, auth):
    alice, bob = auth.token_for("alice"), auth.token_for("bob")
    hook_id = register(client, alice)["webhook"]["id"]
    for method, path in (
        ("GET", f"/api/webhooks/{hook_id}"),
        ("GET", f"/api/webhooks/{hook_id}/deliveries"),
        ("DELETE", f"/api/webhooks/{hook_id}"),
    ):
        response = client.open(path, method=method, headers=auth.headers(bob))
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/webhooks", headers=auth.headers(bob)).get_json()["webhooks"] == []
    assert [h["id"] for h in client.get("/api/webhooks", headers=auth.headers(alice)).get_json()["webhooks"]] == [
        hook_id
    ]
    assert client.delete(f"/api/webhooks/{hook_id}", headers=auth.headers(alice)).status_code == 204
    assert client.get(f"/api/webhooks/{hook_id}", headers=auth.headers(alice)).status_code == 404


def test_the_webhook_routes_are_in_the_openapi_document(app):
    from app.api.schema import openapi_document

    with app.app_context():
        paths = openapi_document(app)["paths"]
    assert set(paths["/api/webhooks"]) == {"get", "post"}
    assert set(paths["/api/webhooks/{webhook_id}"]) == {"get", "delete"}
    assert set(paths["/api/webhooks/{webhook_id}/deliveries"]) == {"get"}
    post = paths["/api/webhooks"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["properties"]["events"]["items"]["enum"]
    assert {"201", "400", "401"} <= set(post["responses"])


# -- targets and signatures -------------------------------------------------------------


def test_targets_listed_as_written_may_be_private_patterns_admit_only_public_hosts():
    only_loopback = normalise_hosts(["127.0.0.1"])
    assert check_target("http://127.0.0.1:8080/x", only_loopback) == "127.0.0.1"
    anywhere = normalise_hosts(["*"])
    assert check_target("https://hooks.example.com/x", anywhere) == "hooks.example.com"
    for private in (
        "http://127.0.0.1/",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://169.254.169.254/",
        "http://[::ffff:10.0.0.1]/",
    ):
        with pytest.raises(HostRefused, match="private or loopback"):
            check_target(private, anywhere)
    domain = normalise_hosts(["*.example.com"])
    assert check_target("https://a.example.com/", domain) == "a.example.com"
    with pytest.raises(HostRefused, match="not allowed by WEBHOOK_ALLOWED_HOSTS"):
        check_target("https://example.org/", domain)


def test_at_send_time_a_name_admitted_by_a_pattern_must_resolve_to_public_addresses():
    anywhere = normalise_hosts(["*"])

    def resolves_to(address):
        return lambda host, port: [(2, 1, 6, "", (address, 0))]

    check_resolved("https://hooks.example.com/x", anywhere, resolve=resolves_to("93.184.216.34"))
    with pytest.raises(HostRefused, match="resolves to a private address"):
        check_resolved("https://rebind.example.com/x", anywhere, resolve=resolves_to("127.0.0.1"))
    with pytest.raises(HostRefused, match="resolves to a private address"):
        check_resolved("http://2130706433/x", anywhere, resolve=resolves_to("127.0.0.1"))


def test_a_signature_verifies_and_a_changed_body_or_old_timestamp_does_not():
    body = b'{"event":"job.completed"}'
    now = int(time.time())
    header = signature_header(SECRET, now, body)
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, body + b" ")
    assert not verify("another-secret-value", header, body)
    assert not verify(SECRET, signature_header(SECRET, now - 3600, body), body)
    assert not verify(SECRET, "v1=deadbeef", body)


# -- the dispatcher -----------------------------------------------------------------------


def test_a_job_end_is_posted_signed_with_the_event_job_and_delivery_headers(app, client, auth, receiver):
    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    hook = register(client, token, url=receiver.url, events=["job.completed"])["webhook"]
    job = run_simulate(client, token)
    dispatch_until(app, receiver.posts)
    (post,) = receiver.posts()
    assert verify(SECRET, post.headers["Herald-Signature"], post.body)
    assert post.headers["Herald-Event"] == "job.completed"
    body = json.loads(post.body)
    assert body["event"] == "job.completed"
    assert body["job"]["id"] == job["id"] and body["job"]["status"] == "completed"
    assert body["job"]["result"] == {"steps": 1}
    deliveries = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=auth.headers(token)).get_json()
    (delivery,) = deliveries["deliveries"]
    assert post.headers["Herald-Delivery"] == str(delivery["id"])
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1 and delivery["last_status_code"] == 200
    assert delivery["next_attempt_at"] is None and delivery["job_id"] == job["id"]


def test_only_the_events_a_webhook_asked_for_are_delivered(app, client, auth, receiver):
    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    register(client, token, url=receiver.url, events=["job.failed"])
    register(client, token, url=receiver.url + "/status", events=["job.status"])
    run_simulate(client, token)
    failed = run_simulate(client, token, fail_at=1)
    dispatch_until(app, lambda: len(receiver.posts()) >= 7)
    posts = receiver.posts()
    ends = [json.loads(p.body) for p in posts if p.path == "/hook"]
    assert [(b["event"], b["job"]["id"]) for b in ends] == [("job.failed", failed["id"])]
    statuses = [json.loads(p.body)["job"]["status"] for p in posts if p.path == "/hook/status"]
    assert sorted(statuses) == sorted(["pending", "running", "completed", "pending", "running", "failed"])


def test_a_receiver_that_fails_twice_gets_the_third_attempt(app, client, auth):
    receiver = Receiver([500, 500])
    try:
        token = auth.token_for("alice")
        start_dispatcher_cursor(app)
        hook = register(client, token, url=receiver.url, events=["*"])["webhook"]
        run_simulate(client, token)
        headers = auth.headers(token)

        def delivered():
            rows = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=headers).get_json()["deliveries"]
            return rows and rows[0]["status"] == "delivered" and rows[0]

        dispatch_until(app, delivered)
        delivery = delivered()
        assert delivery["attempts"] == 3 and delivery["last_status_code"] == 200 and delivery["last_error"] is None
        posts = receiver.posts()
        assert len(posts) == 3
        assert len({p.headers["Herald-Delivery"] for p in posts}) == 1
        assert len({p.body for p in posts}) == 1  # the same body every attempt
        assert all(verify(SECRET, p.headers["Herald-Signature"], p.body) for p in posts)
    finally:
        receiver.close()


def test_a_failing_delivery_shows_its_error_and_gives_up_after_the_retry_period(app, client, auth):
    receiver = Receiver([503] * 100)
    try:
        token = auth.token_for("alice")
        start_dispatcher_cursor(app)
        hook = register(client, token, url=receiver.url, events=["job.completed"])["webhook"]
        run_simulate(client, token)
        path = f"/api/webhooks/{hook['id']}/deliveries"
        headers = auth.headers(token)
        dispatch_until(app, lambda: receiver.posts())
        (pending,) = client.get(path, headers=headers).get_json()["deliveries"]
        assert pending["status"] == "pending" and pending["last_error"] == "HTTP 503"
        assert pending["last_status_code"] == 503 and pending["next_attempt_at"] is not None
        app.extensions["herald_webhooks"].retry_for = 0.0
        dispatch_until(app, lambda: client.get(path + "?status=failed", headers=headers).get_json()["deliveries"])
        (failed,) = client.get(path, headers=headers).get_json()["deliveries"]
        assert failed["status"] == "failed" and failed["next_attempt_at"] is None and failed["attempts"] >= 2
    finally:
        app.extensions["herald_webhooks"].retry_for = 86400.0
        receiver.close()


def test_an_unreachable_receiver_is_recorded_as_an_error_and_retried(app, client, auth):
    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    hook = register(client, token, url="http://127.0.0.1:9/hook", events=["job.completed"])["webhook"]
    run_simulate(client, token)
    path = f"/api/webhooks/{hook['id']}/deliveries"
    dispatch_until(app, lambda: client.get(path, headers=auth.headers(token)).get_json()["deliveries"][0]["attempts"])
    (delivery,) = client.get(path, headers=auth.headers(token)).get_json()["deliveries"]
    assert delivery["status"] == "pending" and delivery["last_status_code"] is None
    assert delivery["last_error"].startswith("ConnectionError")


def test_an_attempt_is_claimed_once_and_events_become_one_delivery_each(app, client, auth):
    token = auth.token_for("alice")
    dispatcher = app.extensions["herald_webhooks"]
    start_dispatcher_cursor(app)
    register(client, token, events=["job.completed"])
    run_simulate(client, token)
    with app.app_context():
        dispatcher.ingest()
        from sqlalchemy import update

        from app.database import write_transaction
        from app.models import WebhookCursor

        with write_transaction() as conn:  # a second process reading the same events again
            conn.execute(update(WebhookCursor).values(last_event_id=0))
        dispatcher.ingest()
        first = dispatcher.claim(10)
        assert len(first) == 1 and first[0][1] == 1
        assert dispatcher.claim(10) == []  # another process finds nothing due


def test_webhooks_created_after_an_event_do_not_get_it(app, client, auth, receiver):
    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    run_simulate(client, token)
    hook = register(client, token, url=receiver.url, events=["*"])["webhook"]
    with app.app_context():
        app.extensions["herald_webhooks"].ingest()
    path = f"/api/webhooks/{hook['id']}/deliveries"
    assert client.get(path, headers=auth.headers(token)).get_json()["deliveries"] == []


def test_without_any_webhook_the_cursor_passes_every_event_unread_and_a_new_webhook_starts_there(
    app, client, auth, monkeypatch
):
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import JobEvent, WebhookCursor, WebhookDelivery

    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    run_simulate(client, token)
    dispatcher = app.extensions["herald_webhooks"]
    monkeypatch.setattr(dispatcher, "_deliveries_for", lambda *_: pytest.fail("events were read"))
    with app.app_context():
        assert dispatcher.ingest() == 0
        db.session.rollback()
        head = db.session.scalar(select(func.max(JobEvent.id)))
        assert db.session.get(WebhookCursor, "job_events").last_event_id == head
    monkeypatch.undo()
    register(client, token, events=["job.completed"])
    job = run_simulate(client, token)

    def delivered() -> list[int]:
        with app.app_context():
            return list(db.session.scalars(select(WebhookDelivery.job_id)))

    dispatch_until(app, lambda: delivered() == [job["id"]])


def test_the_cursor_waits_at_a_hole_in_the_event_ids_until_it_is_old(app, client, auth):
    from datetime import timedelta

    from sqlalchemy import func, insert, select

    from app.database import write_transaction
    from app.extensions import db
    from app.models import JobEvent, WebhookCursor, WebhookDelivery, utcnow
    from app.webhooks.dispatcher import GAP_GRACE

    token = auth.token_for("alice")
    register(client, token, events=["job.status"])
    job = run_simulate(client, token)
    dispatcher = app.extensions["herald_webhooks"]
    with app.app_context():
        dispatcher.ingest()
        head = db.session.scalar(select(func.max(JobEvent.id)))
        assert db.session.get(WebhookCursor, "job_events").last_event_id == head
        with write_transaction() as conn:  # id head+1 is still being committed elsewhere
            conn.execute(
                insert(JobEvent).values(
                    id=head + 2,
                    job_id=job["id"],
                    seq=99,
                    type="job_status",
                    data={"status": "running"},
                    created_at=utcnow(),
                )
            )
        assert dispatcher.ingest() == 0
        db.session.rollback()
        assert db.session.get(WebhookCursor, "job_events").last_event_id == head
        later = db.session.scalars(select(WebhookDelivery.job_event_id)).all()
        assert head + 2 in later  # the event past the hole is delivered all the same
        assert dispatcher.ingest(now=utcnow() + GAP_GRACE + timedelta(seconds=1)) == 1
        db.session.rollback()
        assert db.session.get(WebhookCursor, "job_events").last_event_id == head + 2
        assert db.session.scalars(select(WebhookDelivery.job_event_id)).all().count(head + 2) == 1


def test_a_receiver_that_never_answers_is_given_up_on_after_the_timeout_and_retried(app, client, auth):
    silent = SilentReceiver()
    dispatcher = app.extensions["herald_webhooks"]
    dispatcher.timeout = 0.3
    try:
        token = auth.token_for("alice")
        start_dispatcher_cursor(app)
        hook = register(client, token, url=silent.url, events=["job.completed"])["webhook"]
        run_simulate(client, token)
        path = f"/api/webhooks/{hook['id']}/deliveries"

        def attempted(times: int):
            rows = client.get(path, headers=auth.headers(token)).get_json()["deliveries"]
            return rows and rows[0]["attempts"] >= times and rows[0]["last_error"] and rows[0]

        dispatch_until(app, lambda: attempted(1))
        first = attempted(1)
        assert first["status"] == "pending" and first["last_status_code"] is None
        assert first["last_error"] == "no answer within 0.3 s" and first["next_attempt_at"] is not None
        dispatch_until(app, lambda: attempted(2))
        assert silent.accepted() >= 2  # the retry connected again, and was not answered either
    finally:
        dispatcher.timeout = float(app.config["WEBHOOK_TIMEOUT_SECONDS"])
        silent.close()


# -- retention and deletion -----------------------------------------------------------------


def _stored_delivery(hook_id: int, job_id: int, event_id: int, status: str, last_attempt_at) -> int:
    """A delivery row as the dispatcher leaves it (inside an app context); returns its id."""
    from sqlalchemy import insert

    from app.database import write_transaction
    from app.models import WebhookDelivery, utcnow

    with write_transaction() as conn:
        return int(
            conn.execute(
                insert(WebhookDelivery)
                .values(
                    webhook_id=hook_id,
                    event="job.completed",
                    job_id=job_id,
                    job_event_id=event_id,
                    body="{}",
                    status=status,
                    attempts=1 if last_attempt_at else 0,
                    next_attempt_at=None if status != "pending" else utcnow(),
                    created_at=last_attempt_at or utcnow(),
                    last_attempt_at=last_attempt_at,
                )
                .returning(WebhookDelivery.id)
            ).scalar_one()
        )


def test_finished_deliveries_past_the_retention_are_trimmed_and_pending_ones_never(app, client, auth):
    from datetime import timedelta

    from sqlalchemy import select

    from app.extensions import db
    from app.models import WebhookDelivery, utcnow

    token = auth.token_for("alice")
    hook_id = register(client, token)["webhook"]["id"]
    job = run_simulate(client, token)
    dispatcher = app.extensions["herald_webhooks"]
    assert dispatcher.retention == timedelta(days=30)  # the default
    now = utcnow()
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    with app.app_context():
        ids = {
            name: _stored_delivery(hook_id, job["id"], event_id, status, at)
            for event_id, (name, status, at) in enumerate(
                [
                    ("old delivered", "delivered", old),
                    ("old failed", "failed", old),
                    ("old pending, retried", "pending", old),
                    ("old pending, never tried", "pending", None),
                    ("recent delivered", "delivered", recent),
                    ("recent failed", "failed", recent),
                ],
                start=1,
            )
        }
        with db.engine.begin() as conn:  # a pending row that waited (all servers down) for long
            conn.execute(
                WebhookDelivery.__table__.update()
                .where(WebhookDelivery.id == ids["old pending, never tried"])
                .values(created_at=old)
            )
        assert dispatcher.trim(now=now) == 2
        kept = set(db.session.scalars(select(WebhookDelivery.id)))
        assert kept == {ids[name] for name in ids if not name.startswith(("old delivered", "old failed"))}
        assert dispatcher.trim(now=now) == 0
        assert dispatcher.trim(now=now + timedelta(days=2)) == 2  # the recent ones' turn
        assert set(db.session.scalars(select(WebhookDelivery.status))) == {"pending"}


def test_a_retention_of_zero_days_keeps_every_delivery(app, client, auth):
    from datetime import timedelta

    from app.models import utcnow
    from app.webhooks import retention

    assert retention.max_age_from_config({"WEBHOOK_DELIVERY_RETENTION_DAYS": 0}) is None
    assert retention.max_age_from_config({"WEBHOOK_DELIVERY_RETENTION_DAYS": 0.5}) == timedelta(hours=12)
    token = auth.token_for("alice")
    hook_id = register(client, token)["webhook"]["id"]
    job = run_simulate(client, token)
    with app.app_context():
        _stored_delivery(hook_id, job["id"], 1, "delivered", utcnow() - timedelta(days=3650))
        from app.extensions import db

        assert retention.trim(db.engine, None, now=utcnow()) == 0


def test_a_negative_delivery_retention_is_refused(monkeypatch):
    from app.config import Config, ConfigError

    config = Config()
    monkeypatch.setattr(config, "WEBHOOK_DELIVERY_RETENTION_DAYS", -1)
    with pytest.raises(ConfigError, match="WEBHOOK_DELIVERY_RETENTION_DAYS"):
        config.check_jobs()


def test_the_heartbeat_runs_registered_trims_on_the_history_schedule_once_each(app):
    runner = app.extensions["herald_runner"]
    calls: list[str] = []

    def trim() -> None:
        calls.append("trim")

    def broken() -> None:
        raise RuntimeError("a trim that fails does not stop the others")

    try:
        runner.also_trim(broken)
        runner.also_trim(trim)
        runner.also_trim(trim)  # registered twice, run once
        with app.app_context():
            runner._next_trim = 0.0
            runner._beat()
            assert calls == ["trim"]
            runner._beat()  # not due again until HISTORY_TRIM_INTERVAL has passed
            assert calls == ["trim"]
    finally:
        for callback in (trim, broken):
            if callback in runner._also_trim:
                runner._also_trim.remove(callback)


def test_deleting_a_webhook_deletes_its_pending_deliveries_and_sends_them_no_more(app, client, auth):
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import WebhookDelivery

    receiver = Receiver([503] * 100)
    try:
        token = auth.token_for("alice")
        start_dispatcher_cursor(app)
        hook = register(client, token, url=receiver.url, events=["job.completed"])["webhook"]
        run_simulate(client, token)
        path = f"/api/webhooks/{hook['id']}/deliveries"
        dispatch_until(app, lambda: len(receiver.posts()) >= 2)  # retried: still pending, due again soon
        (pending,) = client.get(path, headers=auth.headers(token)).get_json()["deliveries"]
        assert pending["status"] == "pending"
        assert client.delete(f"/api/webhooks/{hook['id']}", headers=auth.headers(token)).status_code == 204
        sent = len(receiver.posts())
        dispatcher = app.extensions["herald_webhooks"]
        deadline = time.monotonic() + 1.0  # twenty times the retry delay (0.05 s)
        with app.app_context():
            while time.monotonic() < deadline:
                dispatcher.ingest()
                assert dispatcher.send_due(wait=True) == 0
                time.sleep(0.05)
            count = select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.webhook_id == hook["id"])
            assert db.session.scalar(count) == 0
        assert len(receiver.posts()) == sent
    finally:
        receiver.close()


def test_a_webhook_deleted_while_its_deliveries_are_added_loses_only_its_own(app, client, auth, monkeypatch):
    from sqlalchemy import delete, select

    from app.database import write_transaction
    from app.extensions import db
    from app.models import Webhook, WebhookCursor, WebhookDelivery

    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    doomed = register(client, token, events=["job.completed"])["webhook"]["id"]
    kept = register(client, token, events=["job.completed"])["webhook"]["id"]
    run_simulate(client, token)
    dispatcher = app.extensions["herald_webhooks"]
    deliveries_for = dispatcher._deliveries_for

    def then_delete(conn, statuses):
        rows = deliveries_for(conn, statuses)
        with write_transaction() as write:  # its owner deletes it between the read and the insert
            write.execute(delete(Webhook).where(Webhook.id == doomed))
        return rows

    monkeypatch.setattr(dispatcher, "_deliveries_for", then_delete)
    with app.app_context():
        head = db.session.get(WebhookCursor, "job_events").last_event_id
        assert dispatcher.ingest() > 0
        db.session.rollback()
        assert db.session.get(WebhookCursor, "job_events").last_event_id > head  # the cursor moved on
        assert list(db.session.scalars(select(WebhookDelivery.webhook_id))) == [kept]


def test_a_dispatcher_behind_on_events_yields_while_it_builds_and_inserts_deliveries(app, client, auth, monkeypatch):
    import threading

    from sqlalchemy import func, insert, select

    from app.database import write_transaction
    from app.extensions import db, socketio
    from app.models import JobEvent, WebhookDelivery, utcnow
    from app.webhooks import dispatcher as module

    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    for _ in range(2):
        register(client, token, events=["job.status"])
    job = run_simulate(client, token)
    monkeypatch.setattr(module, "YIELD_EVERY", 10)
    here, original, yields = threading.get_ident(), socketio.sleep, []

    def sleep(seconds: float = 0) -> None:
        if threading.get_ident() == here and seconds == 0:
            yields.append(seconds)
        original(seconds)

    monkeypatch.setattr(socketio, "sleep", sleep)
    with app.app_context():
        head = db.session.scalar(select(func.max(JobEvent.id)))
        with write_transaction() as conn:  # fifty status events the dispatcher has not read yet
            conn.execute(
                insert(JobEvent),
                [
                    {
                        "id": head + i,
                        "job_id": job["id"],
                        "seq": 100 + i,
                        "type": "job_status",
                        "data": {"status": "running"},
                        "created_at": utcnow(),
                    }
                    for i in range(1, 51)
                ],
            )
        yields.clear()
        app.extensions["herald_webhooks"].ingest()
        rows = db.session.scalar(select(func.count()).select_from(WebhookDelivery))
    # The job's own three statuses and the fifty: 53 events, two webhooks each.
    assert rows == 106
    # At most ten rows built, and ten inserted, between two yields to the event loop.
    assert len(yields) >= 2 * (rows // 10 - 1)


# -- ids ------------------------------------------------------------------------------------


def test_a_deleted_webhooks_ids_are_never_handed_out_again(app, client, auth, receiver):
    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    first = register(client, token, url=receiver.url, events=["job.failed"])["webhook"]
    run_simulate(client, token, fail_at=1)
    dispatch_until(app, lambda: len(receiver.posts()) == 1)
    assert client.delete(f"/api/webhooks/{first['id']}", headers=auth.headers(token)).status_code == 204
    second = register(client, token, url=receiver.url, events=["job.failed"])["webhook"]
    run_simulate(client, token, fail_at=1)
    dispatch_until(app, lambda: len(receiver.posts()) == 2)
    assert second["id"] > first["id"]
    old, new = (int(post.headers["Herald-Delivery"]) for post in receiver.posts())
    assert new > old  # a receiver deduplicating on Herald-Delivery keeps both


def test_a_trimmed_deliverys_id_is_never_handed_out_again(app, client, auth, receiver):
    from datetime import timedelta

    from app.models import utcnow

    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    register(client, token, url=receiver.url, events=["job.completed"])
    run_simulate(client, token)
    dispatch_until(app, lambda: len(receiver.posts()) == 1)
    with app.app_context():
        assert app.extensions["herald_webhooks"].trim(now=utcnow() + timedelta(days=31)) == 1
    run_simulate(client, token)
    dispatch_until(app, lambda: len(receiver.posts()) == 2)
    old, new = (int(post.headers["Herald-Delivery"]) for post in receiver.posts())
    assert new > old


# -- order ------------------------------------------------------------------------------------


def _doc_receiver_check():
    """``herald_is_stale`` as docs/PLATFORM.md gives it to receivers."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "PLATFORM.md").read_text()
    block = re.search(r"```python\n(import hashlib.*?)```", text, re.S)
    assert block, "the receiver code is missing from docs/PLATFORM.md"
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "PLATFORM.md", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["herald_is_stale"]


def test_every_delivery_carries_the_seq_and_time_of_its_job_event(app, client, auth, receiver):
    token = auth.token_for("alice")
    start_dispatcher_cursor(app)
    register(client, token, url=receiver.url, events=["job.status"])
    job = run_simulate(client, token)
    dispatch_until(app, lambda: len(receiver.posts()) == 3)
    events = client.get(f"/api/jobs/{job['id']}/events", headers=auth.headers(token)).get_json()["events"]
    changes = {e["seq"]: (e["data"]["status"], e["timestamp"]) for e in events if e["type"] == "job_status"}
    bodies = [json.loads(post.body) for post in receiver.posts()]
    assert sorted(b["job"]["seq"] for b in bodies) == sorted(changes)
    for body in bodies:
        assert (body["job"]["status"], body["timestamp"]) == changes[body["job"]["seq"]]
    in_seq_order = sorted(bodies, key=lambda b: b["job"]["seq"])
    assert [b["job"]["status"] for b in in_seq_order] == ["pending", "running", "completed"]


def test_a_status_refused_once_arrives_after_the_jobs_end_and_its_seq_shows_it_is_stale(app, client, auth):
    herald_is_stale = _doc_receiver_check()
    receiver = Receiver([500])  # the job's first status, pending, is refused once
    try:
        token = auth.token_for("alice")
        start_dispatcher_cursor(app)
        register(client, token, url=receiver.url, events=["job.status", "job.completed"])
        job = run_simulate(client, token)
        dispatch_until(app, lambda: len([p for p in receiver.posts() if p.status == 200]) == 4)
        accepted = [json.loads(post.body) for post in receiver.posts() if post.status == 200]
    finally:
        receiver.close()
    # Not in order: the retried pending comes after the job's end (the documented case).
    arrived = [(b["event"], b["job"]["status"]) for b in accepted]
    assert arrived.index(("job.status", "pending")) > arrived.index(("job.status", "completed"))
    last_seq: dict[int, int] = {}
    handled = [b for b in accepted if not herald_is_stale(last_seq, b)]  # type: ignore[operator]
    # The stale pending is dropped; completed, under both its event names, is kept.
    assert sorted((b["event"], b["job"]["status"]) for b in handled) == [
        ("job.completed", "completed"),
        ("job.status", "completed"),
        ("job.status", "running"),
    ]
    assert last_seq == {job["id"]: max(b["job"]["seq"] for b in accepted)}
