"""The seed-003 stream server: history for late clients, {type, data} only, close 1000, no waiting."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import websockets

from app.apitests.stream import EventStream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_all(uri: str, received: list[dict], connected: asyncio.Event | None = None) -> int | None:
    async with websockets.connect(uri) as websocket:
        if connected is not None:
            connected.set()
        async for message in websocket:
            received.append(json.loads(message))
    return websocket.close_code


def test_late_client_gets_every_event_so_far_in_order_then_live_ones_then_1000():
    port = free_port()
    stream = EventStream("127.0.0.1", port).start()
    for n in range(3):
        stream.publish("log", {"level": "info", "message": f"early {n}"})
    received: list[dict] = []

    async def scenario() -> int | None:
        connected = asyncio.Event()
        reader = asyncio.create_task(read_all(f"ws://127.0.0.1:{port}", received, connected))
        await connected.wait()
        for n in range(2):
            stream.publish("log", {"level": "info", "message": f"late {n}"})
        await asyncio.to_thread(stream.close)
        return await reader

    close_code = asyncio.run(scenario())
    assert close_code == 1000
    assert [e["data"]["message"] for e in received] == ["early 0", "early 1", "early 2", "late 0", "late 1"]
    assert all(set(e) == {"type", "data"} for e in received)


def test_close_without_clients_returns_at_once():
    stream = EventStream("127.0.0.1", free_port()).start()
    stream.publish("test_start", {"name": "x", "total_steps": 1})
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 10  # generous: it must not wait for a client


def test_port_in_use_is_an_os_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            EventStream("127.0.0.1", port).start()
        except OSError:
            pass
        else:
            raise AssertionError("binding a taken port must fail")
