"""The per-connection ledger: replay and live stream meet with no gap and no duplicate."""

from __future__ import annotations

from app.realtime.delivery import Ledger
from app.realtime.messages import make_message


def durable(seq: int, job_id: int = 1) -> dict:
    return make_message("job_log", {"message": f"line {seq}"}, job_id=job_id, seq=seq)


def tick(current: int, job_id: int = 1) -> dict:
    return make_message("job_progress", {"current": current}, job_id=job_id)


def test_unknown_connection_gets_everything():
    ledger = Ledger()
    assert ledger.admit("sid", durable(1)) and ledger.admit("sid", tick(1))


def test_live_messages_are_held_during_replay_and_released_after_it():
    ledger = Ledger()
    ledger.begin_replay("sid", 1)
    assert not ledger.admit("sid", durable(5))
    assert not ledger.admit("sid", durable(6))
    assert not ledger.admit("sid", tick(10))
    assert not ledger.admit("sid", tick(11))
    due = ledger.finish_replay("sid", 1, replayed_seq=5)
    assert [m["seq"] for m in due] == [6, None]
    assert due[-1]["data"] == {"current": 11}  # only the latest tick


def test_after_replay_old_seqs_are_dropped_and_new_ones_pass():
    ledger = Ledger()
    ledger.begin_replay("sid", 1)
    ledger.finish_replay("sid", 1, replayed_seq=7)
    assert not ledger.admit("sid", durable(7))
    assert ledger.admit("sid", durable(8))
    assert not ledger.admit("sid", durable(8))


def test_other_jobs_and_connections_are_unaffected():
    ledger = Ledger()
    ledger.begin_replay("sid", 1)
    assert ledger.admit("sid", durable(1, job_id=2))
    assert ledger.admit("other", durable(1))


def test_forget_removes_all_state_of_a_connection():
    ledger = Ledger()
    ledger.begin_replay("sid", 1)
    ledger.forget("sid")
    assert ledger.admit("sid", durable(1))
