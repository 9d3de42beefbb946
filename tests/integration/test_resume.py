"""Recoverable state on the real server: a resume replays in order or says ``resync``.

A client away for a moment gets every durable event it missed, in order, and the
subscribe ack says ``resumed: complete``; one whose position the server no longer keeps
(history trimmed by retention, or a seq past the job's head) gets one ``resync`` with the
job's snapshot and head seq and an ack saying so — never a silent gap. Forged positions
get an ``error`` and the connection keeps working. Both transports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.helpers import wait_for

from .clients import Recorder
from .plain_ws import KindsServer, connect, recv_json, recv_until, send_json, start_server

#: A malformed field, or a number too large for any id (refused while parsing).
REFUSED_INPUT = {"invalid_payload", "invalid_json"}
#: History kept per job on this server: a job logging 60 lines soon loses its oldest.
KEPT = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    yield from start_server(
        tmp_path_factory.mktemp("resume"),
        HISTORY_MAX_EVENTS_PER_JOB=str(KEPT),
        HISTORY_TRIM_INTERVAL="0.2",
        WORKER_HEARTBEAT_INTERVAL="0.5",
    )


def history(server: KindsServer, token: str, job_id: int, after: int = 0) -> dict:
    response = server.api("GET", f"/api/jobs/{job_id}/events?after={after}&limit=10000", token)
    assert response.status_code == 200, response.text
    return dict(response.json())


def trimmed_finished_job(server: KindsServer, token: str) -> int:
    """A completed job that logged 60 lines, of which the server keeps the last ``KEPT``."""
    job_id = server.submit(token, steps=60, interval=0, log_every=1)["id"]
    wait_for(lambda: server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]["status"] == "completed")
    # A trim pass that read the job's head just before its last event was committed keeps
    # one event more; the next pass settles on exactly ``KEPT``.
    wait_for(lambda: trimmed_to_kept(history(server, token, job_id)))
    return job_id


def trimmed_to_kept(kept: dict) -> bool:
    return bool(kept["first_seq"] == kept["last_seq"] - KEPT + 1)


def durable_seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages if m.get("seq") is not None]


def test_a_client_away_for_a_second_resumes_complete_and_in_order(server):
    token = server.login("alice")
    # Fewer events than the server keeps: nothing of this job is trimmed.
    job_id = server.submit(token, steps=20, interval=0.1, log_every=2)["id"]
    first = Recorder(server, token)
    assert first.client.call("subscribe", {"job_id": job_id, "last_seq": 0}, timeout=15)["ok"] is True
    wait_for(lambda: len(durable_seqs(first.of_job(job_id))) >= 3)
    first.close()
    seen = durable_seqs(first.of_job(job_id))
    time.sleep(1.0)  # away while the job goes on

    second = Recorder(server, token)
    ack = second.client.call("subscribe", {"job_id": job_id, "last_seq": seen[-1]}, timeout=15)
    assert ack["ok"] is True and ack["resumed"] == "complete"
    wait_for(lambda: second.job_finished(job_id), timeout=30)
    second.close()
    resumed = durable_seqs(second.of_job(job_id))
    assert seen + resumed == list(range(1, len(seen) + len(resumed) + 1))
    assert not second.of_type("resync")
    assert resumed[-1] == server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]["last_seq"]


def test_a_position_past_retention_gets_resync_over_socketio(server):
    token = server.login("alice")
    job_id = trimmed_finished_job(server, token)
    kept = history(server, token, job_id)
    head = kept["last_seq"]
    assert kept["first_seq"] == head - KEPT + 1 and len(kept["events"]) == KEPT
    assert history(server, token, job_id, after=1)["complete"] is False
    assert history(server, token, job_id, after=head - 5)["complete"] is True

    client = Recorder(server, token)
    ack = client.client.call("subscribe", {"job_id": job_id, "last_seq": 1}, timeout=15)
    assert ack["ok"] is True and ack["resumed"] == "resync"
    resync = wait_for(lambda: client.of_type("resync", job_id))[0]
    assert resync["data"]["last_seq"] == head and resync["data"]["requested_seq"] == 1
    assert resync["data"]["job"]["status"] == "completed" and resync["data"]["job"]["last_seq"] == head
    assert durable_seqs(client.of_job(job_id)) == []  # nothing from the broken position

    # A position still kept resumes completely on the same connection.
    ack = client.client.call("subscribe", {"job_id": job_id, "last_seq": head - 3}, timeout=15)
    assert ack["resumed"] == "complete"
    wait_for(lambda: durable_seqs(client.of_job(job_id)) == [head - 2, head - 1, head])
    client.close()


def test_a_position_past_retention_or_the_head_gets_resync_over_plain_ws(server):
    token = server.login("alice")
    job_id = trimmed_finished_job(server, token)
    head = history(server, token, job_id)["last_seq"]

    async def scenario() -> None:
        ws = await connect(server, "/ws", token)
        try:
            for position in (2, head + 1_000):
                await send_json(ws, {"type": "subscribe", "job_id": job_id, "last_seq": position})
                frames = await recv_until(ws, lambda m: m["type"] == "resync")
                subscribed = [m for m in frames if m["type"] == "subscribed"]
                assert subscribed and subscribed[0]["data"]["resumed"] == "resync"
                assert frames[-1]["data"]["last_seq"] == head and frames[-1]["data"]["requested_seq"] == position
                assert [m for m in frames if m.get("seq") is not None] == []
            await send_json(ws, {"type": "subscribe", "job_id": job_id, "last_seq": head})
            subscribed = await recv_json(ws)
            assert subscribed["type"] == "subscribed" and subscribed["data"]["resumed"] == "complete"
        finally:
            await ws.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("last_seq", ["7", -1, 1.5, 1e18, 2**63, True, [1], {"seq": 1}])
def test_a_forged_position_gets_an_error_and_the_socketio_connection_stays(server, last_seq):
    token = server.login("alice")
    job_id = server.submit(token, steps=1, interval=0)["id"]
    client = Recorder(server, token)
    ack = client.client.call("subscribe", {"job_id": job_id, "last_seq": last_seq}, timeout=15)
    assert ack["ok"] is False and ack["error"]["code"] in REFUSED_INPUT
    assert client.client.call("ping", {}, timeout=15) == {"ok": True}
    client.close()


def test_forged_positions_over_plain_ws_get_errors_and_the_socket_stays(server):
    alice, bob = server.login("alice"), server.login("bob")
    job_id = server.submit(alice, steps=1, interval=0)["id"]
    bobs_job = server.submit(bob, steps=1, interval=0)["id"]

    async def scenario() -> None:
        ws = await connect(server, "/ws", alice)
        try:
            for last_seq in ("7", -1, 1.5, 1e18, 2**63, True):
                await send_json(ws, {"type": "subscribe", "job_id": job_id, "last_seq": last_seq})
                error = await recv_json(ws)
                assert error["type"] == "error" and error["data"]["code"] in REFUSED_INPUT, error
            await send_json(ws, {"type": "subscribe", "job_id": bobs_job, "last_seq": 0})
            error = await recv_json(ws)
            assert error["type"] == "error" and error["data"]["code"] == "not_found"
            await send_json(ws, {"type": "ping"})
            assert (await recv_json(ws))["type"] == "pong"
        finally:
            await ws.close()

    asyncio.run(scenario())


def test_another_users_job_with_a_position_is_not_found_over_socketio(server):
    alice, bob = server.login("alice"), server.login("bob")
    job_id = server.submit(alice, steps=5, interval=0, log_every=1)["id"]
    client = Recorder(server, bob)
    ack = client.client.call("subscribe", {"job_id": job_id, "last_seq": 0}, timeout=15)
    assert ack["ok"] is False and ack["error"]["code"] == "not_found"
    time.sleep(0.3)
    assert client.of_job(job_id) == []
    client.close()
