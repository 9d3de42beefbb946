"""500 plain-WebSocket clients on one job plus one that stops reading (real server).

The 500 must get every durable event (every status) and the final progress; the stalled
client must be dropped with 1013 instead of slowing the job or the others. One asyncio
process drives every client; timeouts are generous (two shared cores).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from .plain_ws import KindsServer, RawClient, connect, send_json, start_server

CLIENTS = 500
LINES = 100
LINE_SIZE = 1000


@pytest.fixture
def server(tmp_path) -> Iterator[KindsServer]:
    # A small send queue so that the stalled client overflows quickly; a long send timeout
    # so that it is still waiting (and gets its close frame) when it reads again.
    yield from start_server(
        tmp_path,
        WEBSOCKET_SEND_QUEUE="20",
        WEBSOCKET_SEND_TIMEOUT="300",
        WEBSOCKET_SEND_BUFFER="16384",
        MAX_CONNECTIONS_PER_USER="0",  # one user, 500 sockets
    )


async def follow(server: KindsServer, token: str, job_id: int, subscribed: list[int]) -> dict:
    """One well-behaved client: subscribe with replay, record seqs, statuses, last progress."""
    async with await connect(server, "/ws", token, ping_interval=None, max_size=None, open_timeout=300) as ws:
        await send_json(ws, {"type": "subscribe", "job_id": job_id, "last_seq": 0})
        seqs: list[int] = []
        statuses: list[str] = []
        last_progress: Any = None
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "subscribed":
                subscribed.append(1)
            if message["seq"] is not None:
                seqs.append(message["seq"])
            if message["type"] == "job_status":
                statuses.append(message["data"]["status"])
                if message["data"]["status"] in {"completed", "failed", "cancelled"}:
                    break
            elif message["type"] == "job_progress":
                last_progress = message["data"]["current"]
        return {"seqs": seqs, "statuses": statuses, "last_progress": last_progress}


def stalled_client(server: KindsServer, token: str, job_id: int) -> RawClient:
    """Subscribes, then never reads until told to (small receive buffer)."""
    client = RawClient(server, f"/ws?token={token}", receive_buffer=4096)
    assert " 101 " in client.status_line
    client.send_json({"type": "subscribe", "job_id": job_id, "last_seq": 0})
    return client


def drain(client: RawClient) -> tuple[list[dict], int | None]:
    """Read again: whatever was buffered, then the close frame's code."""
    received: list[dict] = []
    close_code = None
    for opcode, payload in client.frames():
        if opcode == 0x1:
            received.append(json.loads(payload))
        elif opcode == 0x8:
            close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            break
    client.close()
    return received, close_code


@pytest.mark.timeout(900)
def test_500_clients_get_every_event_and_a_stalled_client_is_dropped_with_1013(server, tmp_path):
    token = server.login("alice")
    gate = tmp_path / "go"

    async def scenario():
        subscribed: list[int] = []
        job = server.submit(token, "test_chatty", lines=LINES, size=LINE_SIZE, interval=0.02, gate=str(gate))
        stalled = stalled_client(server, token, job["id"])
        followers = [asyncio.create_task(follow(server, token, job["id"], subscribed)) for _ in range(CLIENTS)]
        while len(subscribed) < CLIENTS and not any(task.done() for task in followers):
            await asyncio.sleep(0.1)
        gate.touch()  # every client is subscribed: the lines go out live
        results = await asyncio.wait_for(asyncio.gather(*followers), 600)
        stalled_messages, stalled_code = await asyncio.to_thread(drain, stalled)
        return job, results, stalled_messages, stalled_code

    job, results, stalled_messages, stalled_code = asyncio.run(scenario())
    final = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
    assert final["status"] == "completed"
    expected = list(range(1, final["last_seq"] + 1))
    assert len(results) == CLIENTS
    for result in results:
        assert result["seqs"] == expected  # every durable event, in order, once
        assert result["statuses"] == ["pending", "running", "completed"]
        assert result["last_progress"] == LINES
    stalled_seqs = [m["seq"] for m in stalled_messages if m.get("seq") is not None]
    assert stalled_code == 1013
    assert stalled_seqs == list(range(1, len(stalled_seqs) + 1)) and len(stalled_seqs) < final["last_seq"]
