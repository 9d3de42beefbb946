"""Hostile input and stale credentials against the real server, on every transport.

Ids and seqs beyond 64 bits, JSON nested 10,000 deep, and tokens that expire while the
socket is open: each gets an ``error`` (or a close with a reason), never an HTTP 500 in
the socket, and the connection keeps working where the protocol allows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import websockets

from app.inputs import INT64_MAX

from .clients import Recorder
from .plain_ws import KindsServer, RawClient, connect, recv_json, recv_until, send_json, start_server

DEEP = "[" * 10_000 + "]" * 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    yield from start_server(tmp_path_factory.mktemp("hostile"))


def short_lived_token(server: KindsServer, username: str, seconds: float) -> tuple[str, float]:
    """A real access token of ``username`` signed with the server's key, expiring soon."""
    from flask_jwt_extended import create_access_token, decode_token
    from sqlalchemy import select

    from app import create_app
    from app.extensions import db
    from app.models import User

    app = create_app(
        {
            "ENV_NAME": "testing",
            "SQLALCHEMY_DATABASE_URI": server.env["DATABASE_URL"],
            "SOCKETIO_ASYNC_MODE": "threading",
        }
    )
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        token = create_access_token(identity=str(user.id), expires_delta=timedelta(seconds=seconds))
        return token, float(decode_token(token)["exp"])


def test_plain_ws_answers_out_of_range_ids_and_deep_json_with_errors_and_stays_open(server):
    token = server.login("alice")
    hostile = [
        {"type": "subscribe", "job_id": INT64_MAX + 1},
        {"type": "subscribe", "job_id": str(2**64)},
        {"type": "subscribe", "job_id": 1, "last_seq": 2**70},
        {"type": "unsubscribe", "job_id": -(2**63) - 1},
        {"type": "subscribe_batch", "batch_execution_id": "9" * 40},
    ]

    async def scenario():
        replies = []
        async with await connect(server, "/ws", token) as ws:
            for message in hostile:
                await send_json(ws, message)
                replies.append(await recv_json(ws))
            await ws.send('{"type": "echo", "x": ' + DEEP + "}")
            replies.append(await recv_json(ws))
            await send_json(ws, {"type": "ping"})
            pong = await recv_json(ws)
        return replies, pong

    replies, pong = asyncio.run(scenario())
    assert [r["type"] for r in replies] == ["error"] * (len(hostile) + 1)
    assert {r["code"] for r in replies[:-1]} <= {"invalid_payload", "invalid_json"}
    assert replies[-1]["code"] == "invalid_json" and "nested deeper" in replies[-1]["message"]
    assert pong["type"] == "pong"


def test_the_client_dialect_answers_deep_json_with_its_error_and_stays_open(server):
    token = server.login("alice")

    async def scenario():
        async with await connect(server, "/ws/tab-1", token) as ws:
            greeting = await recv_json(ws)
            await ws.send('{"type": "echo", "x": ' + DEEP + "}")
            error = await recv_json(ws)
            await send_json(ws, {"type": "ping"})
            pong = await recv_json(ws)
        return greeting, error, pong

    greeting, error, pong = asyncio.run(scenario())
    assert greeting["type"] == "connection"
    assert error["type"] == "error" and error["code"] == "invalid_json"
    assert pong["type"] == "pong"


@pytest.mark.parametrize(
    ("execution_id", "code"),
    [(str(INT64_MAX + 1), "invalid_id"), ("9" * 40, "invalid_id"), ("0", "invalid_id"), ("-1", "invalid_id")]
    + [("abc", "invalid_id"), (str(INT64_MAX), "not_found")],
)
def test_an_execution_socket_for_an_impossible_id_closes_with_an_error_not_http(server, execution_id, code):
    token = server.login("alice")
    client = RawClient(server, f"/api/v1/ws/executions/{execution_id}?token={token}")
    try:
        assert client.status_line.startswith("HTTP/1.1 101")
        frames = list(client.frames())
    finally:
        client.close()
    texts = [json.loads(payload) for opcode, payload in frames if opcode == 0x1]
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    assert texts and texts[0]["type"] == "error" and texts[0]["code"] == code
    assert closes and int.from_bytes(closes[0][:2], "big") == 1008
    assert all(b"HTTP/1.1" not in payload for _, payload in frames)


async def next_socketio_frame(ws, prefix: str) -> str:
    """The next Engine.IO frame starting with ``prefix``, answering pings meanwhile."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), 15)
        if frame == "2":  # Engine.IO ping
            await ws.send("3")
        elif frame.startswith(prefix):
            return str(frame)


def test_socketio_answers_deep_json_and_huge_ids_with_errors_and_stays_connected(server):
    """Raw Engine.IO frames: what a hostile client can send that python-socketio's client cannot."""
    token = server.login("alice")
    url = server.ws_url + f"/socket.io/?EIO=4&transport=websocket&token={token}"

    next_event = next_socketio_frame

    async def scenario():
        async with websockets.connect(url, open_timeout=20) as ws:
            assert (await ws.recv()).startswith("0")  # Engine.IO open
            await ws.send("40")
            await next_event(ws, "40")
            await ws.send('42["subscribe",' + DEEP + "]")
            deep = await next_event(ws, '42["error"')
            await ws.send('421["subscribe",{"job_id":' + str(2**64) + "}]")
            huge = await next_event(ws, "431")
            await ws.send('422["subscribe",{"job_id":1,"last_seq":' + str(INT64_MAX + 1) + "}]")
            seq = await next_event(ws, "432")
            await ws.send('423["ping",{}]')
            pong_ack = await next_event(ws, "433")
        return deep, huge, seq, pong_ack

    deep, huge, seq, pong_ack = asyncio.run(scenario())
    assert "invalid_json" in deep and "nested deeper" in deep
    for ack in (huge, seq):
        body = json.loads(ack[3:])[0]
        assert body["ok"] is False and body["error"]["code"] in {"invalid_json", "invalid_payload"}
    assert json.loads(pong_ack[3:]) == [{"ok": True}]


#: Socket.IO packets (inside Engine.IO messages) python-socketio's client never sends, and
#: the error code each gets: no event array, bad JSON in an ack, packet types a client
#: does not send.
MALFORMED_PACKETS: list[tuple[str | list[str | bytes], str]] = [
    ('42{"not":"array"}', "invalid_payload"),
    ("42[]", "invalid_payload"),
    ("42[7]", "invalid_payload"),
    ('431[{"a":', "invalid_json"),
    ("49junk", "invalid_json"),
    ("49", "invalid_payload"),
    ('44"x"', "invalid_payload"),
    ('42["*","someone-else"]', "invalid_payload"),
    # Binary packets: none announced, no array, a placeholder naming no attachment, broken
    # JSON (its attachment is consumed with it), and an attachment nobody announced.
    ('450-["echo"]', "invalid_payload"),
    (['451-{"a":{"_placeholder":true,"num":0}}', b"\x01"], "invalid_payload"),
    (['451-["echo",{"_placeholder":true,"num":5}]', b"\x01"], "invalid_payload"),
    (['451-["echo",{"a":', b"\x01"], "invalid_json"),
    (b"\x01\x02", "invalid_payload"),
]


def test_socketio_answers_malformed_packets_with_errors_and_logs_no_traceback(server):
    token = server.login("alice")
    url = server.ws_url + f"/socket.io/?EIO=4&transport=websocket&token={token}"

    async def scenario() -> list[str]:
        async with websockets.connect(url, open_timeout=20) as ws:
            assert (await ws.recv()).startswith("0")
            await ws.send("40")
            await next_socketio_frame(ws, "40")
            errors = []
            for packet, _ in MALFORMED_PACKETS:
                for frame in packet if isinstance(packet, list) else [packet]:
                    await ws.send(frame)
                errors.append(await next_socketio_frame(ws, '42["error"'))
            await ws.send('425["ping",{}]')
            errors.append(await next_socketio_frame(ws, "435"))
            # A well-formed binary event still works: echo sends its attachment back.
            await ws.send('451-6["echo",{"blob":{"_placeholder":true,"num":0}}]')
            await ws.send(b"\x07\x08")
            await next_socketio_frame(ws, "451-")
            errors.append(await asyncio.wait_for(ws.recv(), 15))
            return errors

    frames = asyncio.run(scenario())
    for (packet, code), frame in zip(MALFORMED_PACKETS, frames, strict=False):
        assert json.loads(frame[2:])[1]["code"] == code, packet
    assert json.loads(frames[-2][3:]) == [{"ok": True}]  # the connection kept working
    assert frames[-1] == b"\x07\x08"
    log = server.log_path.read_text(errors="replace")
    assert "message handler error" not in log and "Traceback" not in log


def test_a_client_cannot_run_the_servers_connect_or_disconnect_handler(server):
    """An event named ``disconnect`` would run the server's own handler: the session
    unregistered (its slot freed) while the socket stays open, out of revocation's reach.
    Refused instead, the session stays registered and a logout still closes it."""
    token = server.login("alice")
    url = server.ws_url + f"/socket.io/?EIO=4&transport=websocket&token={token}"

    async def scenario() -> tuple[list[str], str]:
        async with websockets.connect(url, open_timeout=20) as ws:
            assert (await ws.recv()).startswith("0")
            await ws.send("40")
            await next_socketio_frame(ws, "40")
            errors = []
            for packet in ('42["disconnect"]', '42["connect",{}]', '421["disconnect","x"]'):
                await ws.send(packet)
                errors.append(await next_socketio_frame(ws, '42["error"'))
            response = await asyncio.to_thread(server.api, "POST", "/api/auth/logout", token)
            assert response.status_code == 200, response.text
            try:
                ended = await next_socketio_frame(ws, "41")  # Socket.IO disconnect
            except websockets.ConnectionClosed:
                ended = "closed"
            return errors, ended

    errors, ended = asyncio.run(scenario())
    for frame in errors:
        error = json.loads(frame[2:])[1]
        assert error["code"] == "invalid_payload" and "reserved" in error["message"]
    assert ended in ("41", "closed")


def test_a_socketio_connect_whose_auth_is_not_json_is_refused_saying_so(server):
    token = server.login("alice")
    url = server.ws_url + f"/socket.io/?EIO=4&transport=websocket&token={token}"

    async def scenario() -> str:
        async with websockets.connect(url, open_timeout=20) as ws:
            assert (await ws.recv()).startswith("0")
            await ws.send('40{"token": ')
            return await next_socketio_frame(ws, "44")

    refusal = json.loads(asyncio.run(scenario())[2:])
    # Refused although ?token= is valid: an auth that does not parse is never ignored.
    assert refusal["data"]["code"] == "invalid_json"


def test_a_token_that_expires_ends_socketio_and_plain_sessions(server):
    alice = server.login("alice")
    job = server.submit(alice, steps=400, interval=0.05)
    token, expires_at = short_lived_token(server, "alice", 3)

    recorder = Recorder(server, token)
    assert recorder.client.call("subscribe", {"job_id": job["id"]}, timeout=10)["ok"] is True

    async def plain(path, subscribe):
        async with await connect(server, path, token) as ws:
            if subscribe:
                await send_json(ws, {"type": "subscribe", "job_id": job["id"]})
            frames = await recv_until(ws, lambda m: m.get("type") == "error", timeout=15)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            return frames, closed.value.rcvd.code, time.time()

    async def both():
        return await asyncio.gather(plain("/ws", True), plain("/ws/tab-9", False))

    (ws_frames, ws_code, ws_closed_at), (tab_frames, tab_code, tab_closed_at) = asyncio.run(both())
    assert ws_frames[-1]["code"] == "token_expired" and ws_code == 1008
    assert tab_frames[-1]["code"] == "token_expired" and tab_code == 1008
    assert any(m.get("job_id") == job["id"] for m in ws_frames[:-1]), "the job streamed before expiry"
    for closed_at in (ws_closed_at, tab_closed_at):
        assert closed_at - expires_at < 1.5

    deadline = time.monotonic() + 5
    while recorder.client.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not recorder.client.connected
    errors = recorder.of_type("error")
    assert errors and errors[-1]["code"] == "token_expired"
    server.api("POST", f"/api/jobs/{job['id']}/cancel", alice)


def test_an_expired_token_gets_nothing_more_whichever_comes_first(server):
    """A subscribe racing the expiry watch: refused by the handler, or the socket already closed."""
    alice = server.login("alice")
    job = server.submit(alice, steps=200, interval=0.05)
    token, expires_at = short_lived_token(server, "alice", 2)

    async def scenario():
        frames = []
        async with await connect(server, "/ws", token) as ws:
            await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.02)
            try:
                await send_json(ws, {"type": "subscribe", "job_id": job["id"]})
            except websockets.ConnectionClosed:
                pass  # the watch was first: what it sent is still buffered
            try:
                while True:
                    frames.append(await recv_json(ws, 5))
            except websockets.ConnectionClosed as closed:
                return frames, closed.rcvd.code if closed.rcvd else None
        return frames, None

    frames, code = asyncio.run(scenario())
    assert code == 1008
    assert frames and all(f["type"] == "error" and f["code"] == "token_expired" for f in frames)
    server.api("POST", f"/api/jobs/{job['id']}/cancel", alice)
