"""The per-connection ledger: replay and live stream meet with no gap and no duplicate."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.realtime.delivery import Ledger
from app.realtime.messages import make_message


def durable(seq: int, job_id: int = 1) -> dict:
    return make_message("job_log", {"message": f"line {seq}"}, job_id=job_id, seq=seq)


def tick(current: int, job_id: int = 1) -> dict:
    return make_message("job_progress", {"current": current}, job_id=job_id)


def admit(ledger: Ledger, conn: str, message: dict) -> bool:
    return ledger.admitted([conn], message) == [conn]


def test_unknown_connection_gets_everything():
    ledger = Ledger()
    assert admit(ledger, "sid", durable(1)) and admit(ledger, "sid", tick(1))


def test_live_messages_are_held_during_replay_and_released_after_it():
    ledger = Ledger()
    ledger.begin_replay("sid", 1)
    assert not admit(ledger, "sid", durable(5))
    assert not admit(ledger, "sid", durable(6))
    assert not admit(ledger, "sid", tick(10))
    assert not admit(ledger, "sid", tick(11))
    due = ledger.finish_replay("sid", 1, replayed_seq=5)
    assert [m["seq"] for m in due] == [6, None]
    assert due[-1]["data"] == {"current": 11}  # only the latest tick


def test_after_replay_old_seqs_are_dropped_and_new_ones_pass():
    ledger = Ledger()
    ledger.begin_replay("sid", 1)
    ledger.finish_replay("sid", 1, replayed_seq=7)
    assert not admit(ledger, "sid", durable(7))
    assert admit(ledger, "sid", durable(8))
    assert not admit(ledger, "sid", durable(8))


def test_other_jobs_and_connections_are_unaffected():
    ledger = Ledger()
    ledger.begin_replay("sid", 1)
    assert admit(ledger, "sid", durable(1, job_id=2))
    assert admit(ledger, "other", durable(1))


def test_forget_removes_all_state_of_a_connection():
    ledger = Ledger()
    ledger.begin_replay("sid", 1)
    ledger.forget("sid")
    assert admit(ledger, "sid", durable(1))


def test_frame_unmasking_matches_eventlets_byte_by_byte_one():
    """The fast unmasking installed over eventlet's gives the same bytes for any chunk of a
    frame (a chunk starts ``offset`` bytes in, so the mask is rotated)."""
    import os

    from eventlet.websocket import RFC6455WebSocket

    from app.realtime.frames import apply_mask

    slow = RFC6455WebSocket.__dict__["_apply_mask"].__func__
    if slow is apply_mask:  # a served app in this process installed it: rebuild the original
        pytest.skip("eventlet's original is replaced in this process")
    mask = (0x12, 0xAB, 0x00, 0xFF)
    for length in (0, 1, 3, 4, 5, 7, 8, 1000, 65_537):
        data = os.urandom(length + 3)
        for offset in range(5):
            assert apply_mask(data, mask, length=length, offset=offset) == slow(data, mask, length, offset)
    assert apply_mask(b"abc", list(mask)) == slow(b"abc", list(mask))


def test_one_fan_out_admits_each_connection_by_its_own_state():
    ledger = Ledger()
    ledger.begin_replay("replaying", 1)
    ledger.begin_replay("caught-up", 1)
    ledger.finish_replay("caught-up", 1, replayed_seq=9)
    assert ledger.admitted(["new", "replaying", "caught-up"], durable(9)) == ["new"]
    assert ledger.admitted(["new", "replaying", "caught-up"], durable(10)) == ["new", "caught-up"]
    assert [m["seq"] for m in ledger.finish_replay("replaying", 1, replayed_seq=9)] == [10]


def test_a_tick_from_a_background_loop_goes_at_once_when_the_outbox_is_empty_else_behind_it(monkeypatch):
    from app.extensions import socketio
    from app.realtime.delivery import Outbox

    monkeypatch.setattr(socketio, "async_mode", "eventlet", raising=False)  # green: one sender at a time
    sent: list[int] = []
    outbox = Outbox(lambda message, owner, rooms: sent.append(message["data"]["current"]))
    outbox._wake = SimpleNamespace(set=lambda: None)  # its loop is not running: nothing drains
    outbox.send_or_put(tick(1), 1, ("job:1",))
    assert sent == [1]  # nothing waited: sent by the caller
    outbox.put(durable(1), 1, ("job:1",))
    outbox.send_or_put(tick(2), 1, ("job:1",))
    assert sent == [1]  # queued behind the waiting message, never ahead of it
    assert [message["type"] for message, _, _ in outbox._queue] == ["job_log", "job_progress"]
