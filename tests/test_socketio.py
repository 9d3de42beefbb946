"""Socket.IO protocol in-process (threading mode): auth, ping/echo, subscribe, errors, rooms."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from app.extensions import db, socketio
from tests.helpers import wait_for


def connect(app, token, **auth_extra):
    return socketio.test_client(app, auth={"token": token, **auth_extra})


def messages(client, type_=None):
    received = client.get_received()
    return [r["args"][0] for r in received if type_ is None or r["name"] == type_]


def start_job(client, auth, token, **params):
    response = client.post("/api/jobs", json={"kind": "simulate", "params": params}, headers=auth.headers(token))
    return response.get_json()["job"]["id"]


def test_connect_without_token_is_refused(app):
    sio = socketio.test_client(app)
    assert not sio.is_connected()


def test_connect_with_bad_token_is_refused(app):
    sio = socketio.test_client(app, auth={"token": "garbage"})
    assert not sio.is_connected()


def test_token_in_query_string_is_accepted(app, auth):
    token = auth.token_for("alice")
    sio = socketio.test_client(app, query_string=f"token={token}")
    assert sio.is_connected()


def test_a_query_string_client_id_is_taken_and_a_bad_one_refused(app, auth):
    token = auth.token_for("alice")
    sio = socketio.test_client(app, query_string=f"token={token}&client_id=tab-q")
    assert wait_for(lambda: messages(sio, "connection_established"))[0]["data"]["client_id"] == "tab-q"
    assert not socketio.test_client(app, query_string=f"token={token}&client_id=no%20spaces").is_connected()


def test_a_connect_that_fails_unexpectedly_is_refused_and_frees_its_slot(app, auth, monkeypatch):
    from app.realtime import connections
    from app.realtime.limits import user_connections

    token = auth.token_for("alice")

    def broken(info):  # noqa: ANN001, ANN202
        raise RuntimeError("a bug")

    monkeypatch.setattr(connections, "register", broken)
    held_before = dict(user_connections._owners)
    assert not connect(app, token).is_connected()
    assert user_connections._owners == held_before
    monkeypatch.undo()
    assert connect(app, token).is_connected()


def test_connection_established_names_user_and_client(app, auth):
    token = auth.token_for("alice")
    sio = connect(app, token, client_id="tab-1")
    greeting = wait_for(lambda: messages(sio, "connection_established"))[0]
    assert greeting["data"]["client_id"] == "tab-1"
    assert greeting["data"]["user"]["username"] == "alice"
    assert greeting["data"]["server_time"].endswith("Z")


def test_ping_gets_pong_and_echo_returns_the_payload(app, auth):
    sio = connect(app, auth.token_for("alice"))
    assert sio.emit("ping", {"t": 1}, callback=True) == {"ok": True}
    assert sio.emit("echo", {"text": "hi"}, callback=True) == {"ok": True}
    received = {r["name"]: r["args"][0] for r in sio.get_received()}
    assert received["pong"]["data"]["echo"] == {"t": 1}
    assert received["echo"]["data"] == {"text": "hi"}
    assert received["echo"]["type"] == "echo" and received["echo"]["seq"] is None


def test_unknown_event_gets_error_and_connection_stays(app, auth):
    sio = connect(app, auth.token_for("alice"))
    ack = sio.emit("launch_rockets", {}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "unknown_event"
    errors = messages(sio, "error")
    assert errors[0]["code"] == "unknown_event" and errors[0]["type"] == "error"
    assert sio.emit("ping", {}, callback=True) == {"ok": True}


@pytest.mark.parametrize(
    "payload", ["not an object", {"job_id": "abc"}, {"job_id": -1}, {"job_id": 1, "last_seq": "x"}]
)
def test_subscribe_with_wrong_types_gets_validation_error(app, auth, payload):
    sio = connect(app, auth.token_for("alice"))
    ack = sio.emit("subscribe", payload, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"
    assert messages(sio, "error")[0]["code"] == "invalid_payload"


def test_subscribe_replays_from_last_seq_then_goes_live(app, client, auth):
    token = auth.token_for("alice")
    job_id = start_job(client, auth, token, steps=30, interval=0.02, log_every=3)
    sio = connect(app, token)
    ack = sio.emit("subscribe", {"job_id": job_id, "last_seq": 0}, callback=True)
    assert ack["ok"] is True and ack["job"]["id"] == job_id
    seen: list[dict] = []

    def finished():
        seen.extend(messages(sio))
        return any(m.get("type") == "job_status" and m["data"]["status"] == "completed" for m in seen)

    wait_for(finished)
    seqs = [m["seq"] for m in seen if m.get("job_id") == job_id and m["seq"] is not None]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [m for m in seen if m["type"] == "job_progress"][-1]["data"]["current"] == 30


def test_another_users_job_is_refused_by_the_ack_only(app, client, auth):
    alice = auth.token_for("alice")
    bob = auth.token_for("bob")
    job_id = start_job(client, auth, alice, steps=20, interval=0.02)
    sio = connect(app, bob)
    sio.get_received()
    ack = sio.emit("subscribe", {"job_id": job_id}, callback=True)
    assert ack == {"ok": False, "error": {"code": "not_found", "message": f"job {job_id} not found"}}
    assert sio.emit("subscribe", {"all": True}, callback=True)["ok"] is True
    time.sleep(0.8)
    assert [m for m in messages(sio) if m.get("job_id") == job_id] == []


def test_a_job_owner_known_to_the_process_still_refuses_another_user(app, client, auth):
    alice, bob = auth.token_for("alice"), auth.token_for("bob")
    job_id = start_job(client, auth, alice, steps=5, interval=0.02)
    assert connect(app, alice).emit("subscribe", {"job_id": job_id}, callback=True)["ok"] is True  # owner cached
    ack = connect(app, bob).emit("subscribe", {"job_id": job_id}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "not_found"


def test_a_resuming_subscription_reads_the_job_row_once(app, client, auth):
    token = auth.token_for("alice")
    job_id = start_job(client, auth, token, steps=3, interval=0.01, log_every=1)
    connect(app, token).emit("subscribe", {"job_id": job_id}, callback=True)  # the owner is known from here on
    statements: list[str] = []
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        ack = connect(app, token).emit("subscribe", {"job_id": job_id, "last_seq": 0}, callback=True)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert ack["ok"] is True
    job_reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM jobs" in s]
    assert len(job_reads) == 1, statements


def test_all_subscription_follows_new_jobs(app, client, auth):
    token = auth.token_for("alice")
    sio = connect(app, token)
    sio.emit("subscribe", {"all": True}, callback=True)
    job_id = start_job(client, auth, token, steps=2, interval=0)
    seen: list[dict] = []
    wait_for(
        lambda: (
            seen.extend(messages(sio))
            or any(m.get("job_id") == job_id and m.get("data", {}).get("status") == "completed" for m in seen)
        )
    )


def test_subscribed_both_ways_gets_each_message_once(app, client, auth):
    token = auth.token_for("alice")
    job_id = start_job(client, auth, token, steps=10, interval=0.02, log_every=1)
    sio = connect(app, token)
    sio.emit("subscribe", {"job_id": job_id, "last_seq": 0}, callback=True)
    sio.emit("subscribe", {"all": True}, callback=True)
    seen: list[dict] = []
    wait_for(
        lambda: (
            seen.extend(messages(sio))
            or any(m.get("job_id") == job_id and m.get("data", {}).get("status") == "completed" for m in seen)
        )
    )
    seqs = [m["seq"] for m in seen if m.get("job_id") == job_id and m["seq"] is not None]
    assert seqs == list(range(1, len(seqs) + 1))


def test_the_fan_out_reaches_everyone_without_a_room_the_union_of_rooms_once_and_skips_a_sid(app, auth):
    alice, bob = connect(app, auth.token_for("alice")), connect(app, auth.token_for("bob"))
    for sio in (alice, bob):
        sio.get_received()
    alice_sid = alice.eio_sid and socketio.server.manager.sid_from_eio_sid(alice.eio_sid, "/")
    rooms = list(socketio.server.manager.get_rooms(alice_sid, "/"))
    socketio.emit("notice", {"n": 1})  # no room: every connection
    socketio.emit("notice", {"n": 2}, to=[room for room in rooms if room is not None])  # alice's rooms
    socketio.emit("notice", {"n": 3}, skip_sid=alice_sid)
    assert [m["n"] for m in messages(alice, "notice")] == [1, 2]
    assert [m["n"] for m in messages(bob, "notice")] == [1, 3]


def test_unsubscribe_stops_delivery(app, client, auth):
    token = auth.token_for("alice")
    job_id = start_job(client, auth, token, steps=50, interval=0.02, log_every=1)
    sio = connect(app, token)
    sio.emit("subscribe", {"job_id": job_id}, callback=True)
    assert sio.emit("unsubscribe", {"job_id": job_id}, callback=True)["ok"] is True
    time.sleep(0.2)
    sio.get_received()
    time.sleep(0.3)
    assert [m for m in messages(sio) if m.get("job_id") == job_id] == []


def test_logout_closes_sockets_opened_with_that_token(app, client, auth):
    token = auth.token_for("alice")
    sio = connect(app, token)
    assert sio.is_connected()
    assert client.post("/api/auth/logout", headers=auth.headers(token)).get_json()["closed_connections"] == 1
    assert not sio.is_connected()
    assert not connect(app, token).is_connected()
