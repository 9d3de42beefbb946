"""Speed settings that must not regress, checked as behaviour on the real server.

No timing is asserted here (figures live in ``bench/``): the handshake must not negotiate
permessage-deflate, and one process must hold more connections than eventlet's default cap.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets
from websockets.sync.client import connect as ws_connect

from tests.helpers import wait_for

from .conftest import ASYNC_MODE, ServerProcess, launch

#: More than eventlet's default pool (1,024) and gunicorn's default worker_connections (1,000).
MANY_CLIENTS = 2_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose one user may hold thousands of sockets (no per-user cap)."""
    yield from launch(tmp_path, MAX_CONNECTIONS_PER_USER="0")


def socketio_ws_url(server: ServerProcess, token: str) -> str:
    return f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket&token={token}"


def handshake_headers(server: ServerProcess, token: str) -> dict[str, str]:
    """Open a WebSocket offering permessage-deflate (as browsers do); the response headers."""
    with ws_connect(socketio_ws_url(server, token), compression="deflate", open_timeout=30) as ws:
        assert ws.recv(timeout=30).startswith("0{")  # Engine.IO open packet: the socket works
        assert ws.response is not None
        return {name.lower(): value for name, value in ws.response.headers.raw_items()}


def test_websocket_handshake_never_negotiates_compression(server):
    headers = handshake_headers(server, server.login("alice"))
    assert "sec-websocket-extensions" not in headers


@pytest.mark.skipif(ASYNC_MODE != "eventlet", reason="eventlet's WebSocket server is the one that can deflate")
def test_websocket_compression_setting_lets_the_offer_through(tmp_path):
    """The control for the test above: with the setting on, the same offer is accepted."""
    from .conftest import prepare_database

    database_url = f"sqlite:///{tmp_path / 'herald.db'}"
    prepare_database(database_url, ["alice"])
    proc = ServerProcess(tmp_path, {"DATABASE_URL": database_url, "WEBSOCKET_COMPRESSION": "1"})
    proc.start()
    try:
        headers = handshake_headers(proc, proc.login("alice"))
        assert "permessage-deflate" in headers.get("sec-websocket-extensions", "")
    finally:
        proc.stop()


async def _open_socketio_client(url: str, gate: asyncio.Semaphore) -> Any:
    """Connect one raw Socket.IO client and wait for its namespace CONNECT answer."""
    async with gate:
        ws = await websockets.connect(url, open_timeout=120, ping_interval=None, compression=None, max_queue=None)
        opened = await asyncio.wait_for(ws.recv(), 120)
        assert opened.startswith("0{")
        await ws.send("40")
        while True:
            packet = await asyncio.wait_for(ws.recv(), 120)
            if packet == "2":  # Engine.IO ping
                await ws.send("3")
            elif packet.startswith("40"):
                return ws
            elif packet.startswith("44"):
                raise AssertionError(f"connection refused: {packet}")


async def _hold_many_clients(server: ServerProcess, url: str, count: int) -> tuple[int, int]:
    """Connect ``count`` clients at once; (still open, registered by the server) while all are held."""
    gate = asyncio.Semaphore(64)  # the listen backlog is small; do not flood it
    clients = await asyncio.gather(*(_open_socketio_client(url, gate) for _ in range(count)))
    try:
        registered = await asyncio.to_thread(
            wait_for, lambda: _registered_clients(server) >= count and _registered_clients(server), 60, 0.5
        )
        still_open = sum(1 for ws in clients if ws.state is websockets.protocol.State.OPEN)
        return still_open, registered
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def _registered_clients(server: ServerProcess) -> int:
    response = requests.get(server.url + "/health", timeout=30)
    return int(response.json()["connections"]["socketio"])


@pytest.mark.timeout(300)
def test_one_process_holds_two_thousand_socketio_clients(server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < MANY_CLIENTS + 256:
        pytest.skip(f"open-files hard limit {hard} is below {MANY_CLIENTS + 256}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, MANY_CLIENTS + 256), hard))
    url = socketio_ws_url(server, server.login("alice"))
    still_open, registered = asyncio.run(_hold_many_clients(server, url, MANY_CLIENTS))
    assert (still_open, registered) == (MANY_CLIENTS, MANY_CLIENTS)


def listen_backlog_of(port: int) -> int | None:
    """The accept-queue size of the socket listening on ``port`` (``ss`` shows it as Send-Q)."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2].isdigit():
            return int(fields[2])
    return None


def test_listen_backlog_holds_a_reconnect_storm(server):
    """eventlet.listen's default backlog of 50 drops SYNs when thousands reconnect at once."""
    backlog = listen_backlog_of(server.port)
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert backlog is not None and backlog >= min(1024, somaxconn)


def test_gunicorn_worker_connections_follow_max_connections(monkeypatch):
    import runpy

    from .conftest import ROOT

    monkeypatch.setitem(os.environ, "MAX_CONNECTIONS", "12345")
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["worker_connections"] == 12345
    assert settings["worker_class"] == "eventlet"
    assert settings["backlog"] >= 1024
