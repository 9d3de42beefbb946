"""Seed 002's ``/ws/<client_id>`` with the real ``websockets`` client against the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from .plain_ws import KindsServer, connect, recv_json, recv_until, send_json, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    """One server for the module: every test logs in and makes its own jobs."""
    yield from start_server(tmp_path_factory.mktemp("ws002"))


def test_greeting_ping_subscription_and_echo_all_carry_timestamps(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws/test_client", token) as ws:
            greeting = await recv_json(ws)
            await send_json(ws, {"type": "ping"})
            pong = await recv_json(ws)
            await send_json(ws, {"type": "subscribe", "event": "test_events"})
            subscription = await recv_json(ws)
            await send_json(ws, {"type": "custom", "text": "hi"})
            echo = await recv_json(ws)
            await ws.send("{broken")
            error = await recv_json(ws)
            await send_json(ws, {"type": "ping"})
            still_open = await recv_json(ws)
        return greeting, pong, subscription, echo, error, still_open

    greeting, pong, subscription, echo, error, still_open = asyncio.run(scenario())
    assert greeting["type"] == "connection" and greeting["client_id"] == "test_client" and greeting["message"]
    assert pong["type"] == "pong"
    assert subscription["type"] == "subscription" and subscription["event"] == "test_events"
    assert "test_events" in subscription["message"]
    assert echo == {"type": "echo", "data": {"type": "custom", "text": "hi"}, "timestamp": echo["timestamp"]}
    assert error["type"] == "error" and error["code"] == "invalid_json"
    assert still_open["type"] == "pong"
    for message in (greeting, pong, subscription, echo, error):
        assert message["timestamp"].endswith("Z")


def test_own_batch_report_progress_arrives_with_top_level_progress_and_total(server):
    alice, bob = server.login("alice"), server.login("bob")

    async def scenario():
        async with (
            await connect(server, "/ws/report_tab", alice) as mine,
            await connect(server, "/ws/report_tab", bob) as theirs,
        ):
            await recv_json(mine)  # greetings
            await recv_json(theirs)
            job = server.submit(alice, "test_report_ticks", steps=5, interval=0.05)
            ticks = await recv_until(mine, lambda m: m.get("progress") == 5)
            await send_json(theirs, {"type": "ping"})
            bobs = await recv_until(theirs, lambda m: m["type"] == "pong")
            return job, ticks, bobs

    job, ticks, bobs = asyncio.run(scenario())
    assert {m["type"] for m in ticks} == {"batch_report_progress"}
    last = ticks[-1]
    assert last["job_id"] == job["id"] and last["total"] == 5 and last["data"]["percent"] == 100.0
    assert all(m["timestamp"].endswith("Z") for m in ticks)
    assert [m["type"] for m in bobs] == ["pong"]  # another user's progress never reaches bob


def test_other_job_events_do_not_reach_the_seed_002_socket(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws/plain_tab", token) as ws:
            await recv_json(ws)
            job = server.submit(token, steps=3, interval=0.02)
            while server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]["status"] != "completed":
                await asyncio.sleep(0.05)
            await send_json(ws, {"type": "ping"})
            return await recv_until(ws, lambda m: m["type"] == "pong")

    assert [m["type"] for m in asyncio.run(scenario())] == ["pong"]


def test_an_invalid_client_id_is_refused_with_1008(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws/" + "x" * 70, token) as ws:
            error = await recv_json(ws)
            try:
                await recv_json(ws)
            except Exception:
                pass
            return error, ws.close_code

    error, code = asyncio.run(scenario())
    assert error["code"] == "invalid_client_id" and code == 1008
