"""Authentication on every entry point: every bad token refused, and no socket outlives its token.

The matrix crosses the token kinds (expired, revoked, refresh, ``alg=none``, wrong key,
malformed, garbage, an unknown user's, missing) with every way in: REST (header and
``?token=``), Socket.IO (``auth`` object and ``?token=``) and each plain-WebSocket endpoint
(``/ws``, seed 002's ``/ws/<client_id>``, seed 004's ``/api/v1/ws/executions/<id>``) with
``?token=``, ``Authorization: Bearer`` and a first ``auth`` frame. Each is refused with the
documented code: REST ``401``, Socket.IO ``connect_error`` ``data.code``, plain WS an
``error`` frame and close 1008.

Mid-session: logout closes the token's sockets on every transport, on this process and
(``scale_out``) on another one; expiry is proven for Socket.IO, ``/ws`` and
``/ws/<client_id>`` in ``test_hostile_input.py`` and for the execution socket here.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import socketio
import websockets

from app.config import TestingConfig
from tests.helpers import wait_for

from .clients import Recorder
from .cluster import Cluster
from .plain_ws import KindsServer, connect, recv_all_until_closed, recv_json, send_json, start_server
from .test_hostile_input import short_lived_token

KEY = TestingConfig.JWT_SECRET_KEY
#: The code each kind of token is refused with (every transport says the same).
EXPECTED = {
    "expired": "token_expired",
    "revoked": "token_revoked",
    "refresh": "token_invalid",
    "alg_none": "token_invalid",
    "wrong_key": "token_invalid",
    "malformed": "token_invalid",
    "garbage": "token_invalid",
    "unknown_user": "token_invalid",
    "missing": "token_missing",
}
PLAIN_PATHS = {"ws": "/ws", "client": "/ws/tab-1", "execution": "/api/v1/ws/executions/1"}
#: ``?token=``, ``Authorization: Bearer`` or a first ``{"type": "auth"}`` frame.
PLAIN_WAYS = ("query", "header", "first_frame")


def _entries() -> list[tuple[str, str]]:
    """Every (token kind, entry point); without a token there is one request per entry point."""
    entries = ["rest_header", "rest_query", "socketio_auth", "socketio_query"]
    entries += [f"{name}_{way}" for name in PLAIN_PATHS for way in PLAIN_WAYS]
    tokenless = ["rest_header", "socketio_auth"] + [f"{name}_first_frame" for name in PLAIN_PATHS]
    return [(kind, entry) for kind in EXPECTED for entry in (tokenless if kind == "missing" else entries)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    yield from start_server(tmp_path_factory.mktemp("tokens"))


def _login(server: KindsServer, username: str) -> dict[str, Any]:
    response = requests.post(
        server.url + "/api/auth/login", json={"username": username, "password": "password123"}, timeout=10
    )
    response.raise_for_status()
    return dict(response.json())


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _resign(claims: dict[str, Any], key: str | None = KEY, algorithm: str = "HS256", **changes: Any) -> str:
    return jwt.encode({**claims, "jti": str(uuid.uuid4()), **changes}, key, algorithm=algorithm)


@pytest.fixture(scope="module")
def tokens(server: KindsServer) -> dict[str, str | None]:
    """One token of each kind, built from a real login of alice."""
    login = _login(server, "alice")
    valid = _claims(login["access_token"])
    now = int(time.time())
    revoked = _login(server, "alice")["access_token"]
    # Used on sockets first, so this process has it in its token cache when it is revoked.
    recorder = Recorder(server, revoked)

    async def open_plain() -> None:
        async with await connect(server, "/ws", revoked) as ws:
            await send_json(ws, {"type": "ping"})
            await recv_json(ws)

    asyncio.run(open_plain())
    assert server.api("POST", "/api/auth/logout", revoked).status_code == 200
    recorder.close()
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    return {
        "expired": _resign(valid, iat=now - 120, nbf=now - 120, exp=now - 60),
        "revoked": revoked,
        "refresh": login["refresh_token"],
        "alg_none": _resign(valid, None, "none"),
        "wrong_key": _resign(valid, "not-the-servers-key-0123456789abcdef"),
        "malformed": f"{header}.bm90IGpzb24.c2lnbmF0dXJl",  # the payload is not JSON
        "garbage": "garbage",
        "unknown_user": _resign(valid, sub="987654"),
        "missing": None,
    }


def refused_over_rest(server: KindsServer, token: str | None, *, query: bool) -> tuple[int, str]:
    headers = {} if query or token is None else {"Authorization": f"Bearer {token}"}
    params = {"token": token} if query and token is not None else {}
    response = requests.get(server.url + "/api/jobs", headers=headers, params=params, timeout=10)
    return response.status_code, response.json()["error"]["code"]


def refused_over_socketio(server: KindsServer, token: str | None, *, query: bool) -> str:
    client = socketio.Client(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", lambda *data: errors.append(data[0] if data else None))
    url = server.url + (f"?token={token}" if query and token is not None else "")
    auth = {} if query or token is None else {"token": token}
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)
    client.disconnect()
    assert errors, "no connect_error"
    return str(errors[0]["data"]["code"])


def refused_over_plain(server: KindsServer, path: str, token: str | None, way: str) -> tuple[list[Any], int | None]:
    async def scenario() -> tuple[list[Any], int | None]:
        kwargs: dict[str, Any] = {}
        if way == "header" and token is not None:
            kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
        async with await connect(server, path, token if way == "query" else None, **kwargs) as ws:
            if way == "first_frame":
                await send_json(ws, {"type": "auth", **({"token": token} if token is not None else {})})
            frames = await recv_all_until_closed(ws, timeout=10)
            return frames, ws.close_code

    return asyncio.run(scenario())


@pytest.mark.parametrize(("kind", "entry"), _entries())
def test_a_bad_token_is_refused_on_every_entry_point(server, tokens, kind, entry):
    token, code = tokens[kind], EXPECTED[kind]
    if entry.startswith("rest_"):
        assert refused_over_rest(server, token, query=entry == "rest_query") == (401, code)
    elif entry.startswith("socketio_"):
        assert refused_over_socketio(server, token, query=entry == "socketio_query") == code
    else:
        name, way = entry.split("_", 1)
        frames, close_code = refused_over_plain(server, PLAIN_PATHS[name], token, way)
        assert [(f["type"], f["code"]) for f in frames] == [("error", code)]
        assert close_code == 1008


def test_a_good_token_passes_every_entry_point(server):
    """The matrix's control: the same requests with a valid token are served."""
    token = server.login("alice")
    assert server.api("GET", "/api/jobs", token).status_code == 200
    assert requests.get(server.url + "/api/jobs", params={"token": token}, timeout=10).status_code == 200
    Recorder(server, token).close()

    async def plain() -> list[str]:
        answers = []
        for path in ("/ws", "/ws/tab-1"):
            async with await connect(server, path, token) as ws:
                await send_json(ws, {"type": "ping"})
                answers.append((await recv_json(ws))["type"])
        return answers

    assert asyncio.run(plain()) == ["pong", "connection"]


def _execution(server: KindsServer, token: str, steps: int = 400) -> int:
    workflow = server.api(
        "POST",
        "/api/workflows",
        token,
        json={"name": "long", "steps": [{"kind": "simulate", "params": {"steps": steps, "interval": 0.05}}]},
    ).json()["workflow"]
    response = server.api("POST", "/api/v1/executions", token, json={"workflow_id": workflow["id"]})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_logout_mid_session_closes_the_token_s_sockets_on_every_transport(server):
    token = server.login("alice")
    other = server.login("alice")
    execution_id = _execution(server, token)
    recorder = Recorder(server, token)
    bystander = Recorder(server, other)

    async def scenario() -> tuple[dict[str, Any], list[tuple[list[Any], int | None]]]:
        paths = ("/ws", "/ws/tab-7", f"/api/v1/ws/executions/{execution_id}")
        sockets = [await connect(server, path, token) for path in paths]
        await send_json(sockets[0], {"type": "ping"})  # /ws greets nobody: make sure it is served
        for ws in sockets:
            await recv_json(ws)  # pong, seed 002's greeting, seed 004's first status
        body = (await asyncio.to_thread(server.api, "POST", "/api/auth/logout", token)).json()
        results = []
        for ws in sockets:
            frames = await recv_all_until_closed(ws, timeout=5)
            results.append((frames, ws.close_code))
        return body, results

    body, results = asyncio.run(scenario())
    assert body["closed_connections"] == 4
    for frames, close_code in results:
        assert [f["code"] for f in frames if f.get("type") == "error"] == ["token_revoked"]
        assert close_code == 1008
    deadline = time.monotonic() + 5
    while recorder.client.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not recorder.client.connected
    assert [m["code"] for m in recorder.of_type("error")] == ["token_revoked"]
    assert bystander.client.connected, "another token of the same user is not affected"
    bystander.close()
    server.api("POST", f"/api/jobs/{execution_id}/cancel", other)


def test_a_token_that_expires_closes_the_execution_socket(server):
    """Expiry mid-session on seed 004's endpoint (the other transports: test_hostile_input)."""
    alice = server.login("alice")
    execution_id = _execution(server, alice)
    token, expires_at = short_lived_token(server, "alice", 2)

    async def scenario() -> tuple[list[Any], int | None, float]:
        async with await connect(server, f"/api/v1/ws/executions/{execution_id}", token) as ws:
            frames = await recv_all_until_closed(ws, timeout=10)
            return frames, ws.close_code, time.time()

    frames, close_code, closed_at = asyncio.run(scenario())
    assert frames[0]["type"] == "status", "the execution streamed before expiry"
    assert frames[-1] == {"type": "error", "code": "token_expired", "message": frames[-1]["message"]}
    assert close_code == 1008 and closed_at - expires_at < 1.5
    server.api("POST", f"/api/jobs/{execution_id}/cancel", alice)


def test_tokens_in_query_strings_never_reach_the_log(server, tokens):
    """Every token this module sent in a URL (REST, Socket.IO, plain WS) is redacted."""
    token = server.login("alice")
    requests.get(server.url + "/api/jobs", params={"token": token}, timeout=10)

    async def plain() -> None:
        async with await connect(server, "/ws", token) as ws:
            await send_json(ws, {"type": "ping"})
            await recv_json(ws)

    asyncio.run(plain())
    time.sleep(0.3)
    log = Path(server.log_path).read_text(errors="replace")
    assert "token=[redacted]" in log
    for secret in [token, *(t for t in tokens.values() if t)]:
        assert secret not in log
    assert "eyJ" not in log, "every JWT starts with eyJ: none may be logged"


@pytest.mark.scale_out
@pytest.mark.eventlet_only
def test_logout_on_one_process_closes_the_token_s_sockets_on_another(tmp_path: Path, postgres_database: str):
    """Two gunicorn web processes on PostgreSQL + Redis: logout on A ends the token's
    Socket.IO and plain sockets on B within a couple of seconds, and B refuses the token
    from then on although it had it in its token cache."""
    cluster = Cluster(tmp_path, postgres_database)
    try:
        a, b = cluster.web(), cluster.web()
        token, other = a.login("alice"), a.login("alice")
        recorder, bystander = Recorder(b, token), Recorder(b, other)
        ws_url = b.url.replace("http://", "ws://")

        async def scenario() -> tuple[dict[str, Any], float, list[tuple[list[Any], int | None, float]]]:
            sockets = [await websockets.connect(f"{ws_url}{path}?token={token}") for path in ("/ws", "/ws/tab-7")]
            await send_json(sockets[0], {"type": "ping"})
            for ws in sockets:
                await recv_json(ws)  # served: pong, greeting
            started = time.monotonic()
            body = (await asyncio.to_thread(a.api, "POST", "/api/auth/logout", token)).json()
            results = []
            for ws in sockets:
                frames = await recv_all_until_closed(ws, timeout=5)
                results.append((frames, ws.close_code, time.monotonic() - started))
            return body, started, results

        body, started, results = asyncio.run(scenario())
        wait_for(lambda: not recorder.client.connected, timeout=5, interval=0.01)
        socketio_latency = time.monotonic() - started
        assert body["closed_connections"] == 0, "no socket of that token was on A"
        for frames, close_code, latency in results:
            assert [f["code"] for f in frames if f.get("type") == "error"] == ["token_revoked"]
            assert close_code == 1008 and latency < 2.0, latency
        assert [m["code"] for m in recorder.of_type("error")] == ["token_revoked"] and socketio_latency < 2.0
        plain_latency = [round(latency, 3) for _, _, latency in results]
        print(f"revocation latency A → B: plain {plain_latency} s, Socket.IO ≤ {socketio_latency:.3f} s")
        assert bystander.client.connected, "another token of the same user is not affected"
        assert refused_over_socketio(b, token, query=False) == "token_revoked"
        bystander.close()
    finally:
        cluster.stop()
