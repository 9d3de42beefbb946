"""``/ws`` with the real ``websockets`` client against the real server: Herald messages,
replay, auth, origin, limits and seed 000's batch updates."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio
import websockets

from tests.helpers import wait_for

from .plain_ws import (
    KindsServer,
    connect,
    is_final_status,
    recv_all_until_closed,
    recv_json,
    recv_until,
    send_json,
    start_server,
)

ALLOWED_ORIGIN = "http://dashboard.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    """One server for the module: every test logs in and makes its own jobs."""
    yield from start_server(tmp_path_factory.mktemp("ws"), WEBSOCKET_AUTH_TIMEOUT="1.5", SOCKET_MESSAGE_LIMIT="4096")


@pytest.fixture
def origin_server(tmp_path: Path) -> Iterator[KindsServer]:
    yield from start_server(tmp_path, CORS_ALLOWED_ORIGINS=ALLOWED_ORIGIN)


def durable_seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages if m.get("seq") is not None]


def test_ping_gets_pong_and_echo_returns_the_payload(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "ping", "data": {"t": 1}})
            pong = await recv_json(ws)
            await send_json(ws, {"type": "echo", "text": "hello", "n": [1, 2]})
            echo = await recv_json(ws)
        return pong, echo

    pong, echo = asyncio.run(scenario())
    assert pong["type"] == "pong" and pong["data"]["echo"] == {"t": 1} and pong["timestamp"].endswith("Z")
    assert echo["type"] == "echo" and echo["data"] == {"text": "hello", "n": [1, 2]}


def test_malformed_frames_get_errors_and_the_socket_stays_usable(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws", token) as ws:
            codes = []
            frames = ["{not json", b"\x00\x01", "[1, 2]", '{"type": "dance"}', '{"type": "subscribe", "job_id": "x"}']
            for frame in frames:
                await ws.send(frame)
                error = await recv_json(ws)
                assert error["type"] == "error" and error["message"]
                codes.append(error["code"])
            await send_json(ws, {"type": "ping"})
            return codes, await recv_json(ws)

    codes, pong = asyncio.run(scenario())
    assert codes == ["invalid_json", "invalid_json", "invalid_payload", "unknown_type", "invalid_payload"]
    assert pong["type"] == "pong"


def test_subscribe_acks_with_the_snapshot_then_streams_the_job_in_order(server):
    token = server.login("alice")
    job = server.submit(token, steps=10, interval=0.03, log_every=3)

    async def scenario():
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "subscribe", "job_id": job["id"], "last_seq": 0})
            return await recv_until(ws, is_final_status)

    messages = asyncio.run(scenario())
    ack = messages[0]
    assert ack["type"] == "subscribed" and ack["job_id"] == job["id"] and ack["seq"] is None
    assert ack["data"]["job"]["id"] == job["id"]
    seqs = durable_seqs(messages[1:])
    assert seqs == list(range(1, len(seqs) + 1))
    assert [m["data"]["status"] for m in messages if m["type"] == "job_status"] == ["pending", "running", "completed"]
    progress = [m for m in messages if m["type"] == "job_progress"]
    assert progress and progress[-1]["data"]["current"] == 10


def test_resubscribe_after_reconnect_replays_the_missed_events_without_gap_or_duplicate(server):
    token = server.login("alice")
    job = server.submit(token, steps=60, interval=0.03, log_every=2)

    async def first_visit():
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "subscribe", "job_id": job["id"], "last_seq": 0})
            messages = await recv_until(ws, lambda m: len(durable_seqs([m])) == 1 and m["seq"] >= 6)
        return durable_seqs(messages)

    async def second_visit(last_seq):
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "subscribe", "job_id": job["id"], "last_seq": last_seq})
            return await recv_until(ws, is_final_status, timeout=60)

    seen = asyncio.run(first_visit())
    time.sleep(0.4)  # the job keeps publishing while nobody listens
    after = asyncio.run(second_visit(seen[-1]))
    assert after[0]["type"] == "subscribed"
    replayed = durable_seqs(after[1:])
    assert replayed[0] == seen[-1] + 1
    combined = seen + replayed
    assert combined == list(range(1, len(combined) + 1))
    final = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
    assert combined[-1] == final["last_seq"]


def test_another_users_job_is_refused_with_not_found_and_nothing_else(server):
    alice, bob = server.login("alice"), server.login("bob")
    job = server.submit(alice, steps=10, interval=0.03)

    async def scenario():
        async with await connect(server, "/ws", bob) as ws:
            await send_json(ws, {"type": "subscribe", "job_id": job["id"], "last_seq": 0})
            await send_json(ws, {"type": "subscribe_batch", "batch_execution_id": job["id"]})
            refusals = [await recv_json(ws), await recv_json(ws)]
            await asyncio.sleep(0.8)
            await send_json(ws, {"type": "ping"})
            return refusals, await recv_until(ws, lambda m: m["type"] == "pong")

    refusals, rest = asyncio.run(scenario())
    assert [(m["type"], m["code"]) for m in refusals] == [("error", "not_found"), ("error", "not_found")]
    assert [m["type"] for m in rest] == ["pong"]


def test_token_in_header_or_first_auth_message_is_accepted(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await send_json(ws, {"type": "ping"})
            by_header = await recv_json(ws)
        async with await connect(server, "/ws") as ws:
            await send_json(ws, {"type": "auth", "token": token})
            await send_json(ws, {"type": "ping"})
            by_message = await recv_json(ws)
        return by_header, by_message

    by_header, by_message = asyncio.run(scenario())
    assert by_header["type"] == "pong" and by_message["type"] == "pong"


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("bad query token", "token_invalid"),
        ("first message is not auth", "auth_required"),
        ("bad auth message", "token_invalid"),
        ("silence", "auth_timeout"),
    ],
)
def test_unauthenticated_sockets_get_an_error_then_close_1008(server, how, code):
    async def scenario():
        token = "not-a-token" if how == "bad query token" else None
        async with await connect(server, "/ws", token) as ws:
            if how == "first message is not auth":
                await send_json(ws, {"type": "subscribe", "job_id": 1})
            elif how == "bad auth message":
                await send_json(ws, {"type": "auth", "token": "forged"})
            messages = await recv_all_until_closed(ws)
            return messages, ws.close_code, ws.close_reason

    messages, close_code, reason = asyncio.run(scenario())
    assert [(m["type"], m["code"]) for m in messages] == [("error", code)]
    assert close_code == 1008 and reason


def test_foreign_origin_is_refused_with_403_and_listed_or_own_origins_are_served(origin_server):
    server = origin_server
    token = server.login("alice")

    async def scenario():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect(server, "/ws", token, origin="http://evil.example")
        served = []
        for origin in (ALLOWED_ORIGIN, server.url):
            async with await connect(server, "/ws", token, origin=origin) as ws:
                await send_json(ws, {"type": "ping"})
                served.append((await recv_json(ws))["type"])
        return refused.value.response.status_code, served

    status, served = asyncio.run(scenario())
    assert status == 403
    assert served == ["pong", "pong"]


def test_oversized_frame_closes_the_socket_with_1009(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "echo", "blob": "x" * 8000})
            with pytest.raises(websockets.ConnectionClosed):
                await recv_json(ws)
            return ws.close_code

    assert asyncio.run(scenario()) == 1009


def test_subscribe_batch_gets_seed_000_updates_from_status_and_counts(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws", token) as ws:
            job = server.submit(token, "test_counted_batch", cases=4, interval=0.1)
            await send_json(ws, {"type": "subscribe_batch", "batch_execution_id": job["id"]})
            updates = await recv_until(ws, lambda m: m["data"]["status"] == "completed")
            await send_json(ws, {"type": "unsubscribe_batch", "batch_execution_id": job["id"]})
            await send_json(ws, {"type": "ping"})
            after = await recv_json(ws)
            return job, updates, after

    job, updates, after = asyncio.run(scenario())
    for update in updates:
        assert list(update) == ["type", "batch_execution_id", "data", "timestamp"]
        assert update["type"] == "batch_execution_update" and update["batch_execution_id"] == job["id"]
        assert list(update["data"]) == [
            "status",
            "success_count",
            "failed_count",
            "running_count",
            "pending_count",
            "total_count",
            "updated_at",
        ]
        assert update["timestamp"].endswith("Z") and update["data"]["updated_at"].endswith("Z")
    last = updates[-1]["data"]
    assert (last["success_count"], last["failed_count"], last["pending_count"], last["total_count"]) == (3, 1, 0, 4)
    # Updates sent before the job set its counts carry zeros (with Redis, the "running" one
    # can arrive after the subscribe snapshot); from the first counts on, pending only falls.
    pendings = [u["data"]["pending_count"] for u in updates if u["data"]["total_count"]]
    assert pendings == sorted(pendings, reverse=True) and len(pendings) >= 3
    assert after["type"] == "pong"


def test_subscribe_batch_over_socketio_gets_the_same_updates(server):
    token = server.login("alice")
    client = socketio.Client(reconnection=False)
    updates: list[dict] = []
    client.on("batch_execution_update", updates.append)
    client.connect(server.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        job = server.submit(token, "test_counted_batch", cases=3, interval=0.1)
        ack = client.call("subscribe_batch", {"batch_execution_id": str(job["id"])}, timeout=10)
        assert ack == {"ok": True, "batch_execution_id": job["id"]}
        wait_for(lambda: updates and updates[-1]["data"]["status"] == "completed", timeout=20)
        assert updates[-1]["data"]["total_count"] == 3 and updates[-1]["data"]["success_count"] == 2
        bob = socketio.Client(reconnection=False)
        bob.connect(server.url, auth={"token": server.login("bob")}, transports=["websocket"], wait_timeout=10)
        refused = bob.call("subscribe_batch", {"batch_execution_id": job["id"]}, timeout=10)
        assert refused["ok"] is False and refused["error"]["code"] == "not_found"
        bob.disconnect()
    finally:
        client.disconnect()


def test_server_pings_and_drops_a_peer_that_never_answers(tmp_path):
    servers = start_server(tmp_path, WEBSOCKET_PING_INTERVAL="1")
    server = next(servers)
    try:
        token = server.login("alice")
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        raw.sendall(
            (
                f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        received = b""
        started = time.monotonic()
        while True:  # read (never answer pings) until the server closes the connection
            chunk = raw.recv(4096)
            if not chunk:
                break
            received += chunk
        elapsed = time.monotonic() - started
        raw.close()
        assert b" 101 " in received.split(b"\r\n", 1)[0]
        body = received.split(b"\r\n\r\n", 1)[1]
        assert body[:1] == b"\x89"  # a ping frame came first
        assert b"\x88" in body and b"Ping/Pong timeout" in body  # then a close frame
        assert elapsed < 15

        async def answering_client():
            async with await connect(server, "/ws", token) as ws:
                await asyncio.sleep(3.5)  # websockets answers pings by itself
                await send_json(ws, {"type": "ping"})
                return (await recv_json(ws))["type"]

        assert asyncio.run(answering_client()) == "pong"
    finally:
        next(servers, None)


def test_logout_closes_plain_sockets_opened_with_that_token(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "ping"})
            await recv_json(ws)
            response = await asyncio.to_thread(server.api, "POST", "/api/auth/logout", token)
            messages = await recv_all_until_closed(ws)
            return response.json(), messages, ws.close_code

    body, messages, close_code = asyncio.run(scenario())
    assert body["closed_connections"] == 1
    assert [m["code"] for m in messages if m.get("type") == "error"] == ["token_revoked"]
    assert close_code == 1008
