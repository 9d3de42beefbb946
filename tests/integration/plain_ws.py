"""Helpers for plain-WebSocket tests: a server with test kinds, and a JSON client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import websockets

from .conftest import ROOT, ServerProcess, prepare_database

SCRIPT = Path(__file__).with_name("serve_with_test_kinds.py")


class KindsServer(ServerProcess):
    """The real server, started through ``serve_with_test_kinds.py``."""

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT)], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()[-3000:]}")

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)


def start_server(tmp_path: Path, **env: str) -> Iterator[KindsServer]:
    """Fixture body: a fresh server (users alice and bob) with extra environment."""
    database_url = f"sqlite:///{tmp_path / 'herald.db'}"
    prepare_database(database_url, ["alice", "bob"])
    proc = KindsServer(tmp_path, {"DATABASE_URL": database_url, **env})
    proc.start()
    yield proc
    proc.stop()


async def connect(server: KindsServer, path: str, token: str | None = None, **kwargs: Any) -> Any:
    """Open a plain WebSocket, with ``?token=`` when a token is given."""
    url = server.ws_url + path
    if token is not None:
        url += ("&" if "?" in url else "?") + "token=" + token
    kwargs.setdefault("open_timeout", 20)
    return await websockets.connect(url, **kwargs)


async def recv_json(ws: Any, timeout: float = 15.0) -> dict[str, Any]:
    """The next frame, parsed."""
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def send_json(ws: Any, message: Any) -> None:
    await ws.send(json.dumps(message))


async def recv_until(ws: Any, done: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every frame up to and including the first for which ``done`` is true."""
    received: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"condition not met within {timeout}s; got {received[-5:]}")
        message = await recv_json(ws, left)
        received.append(message)
        if done(message):
            return received


async def recv_all_until_closed(ws: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every frame until the server closes the socket."""
    received: list[dict[str, Any]] = []
    try:
        while True:
            received.append(await recv_json(ws, timeout))
    except websockets.ConnectionClosed:
        return received


def is_final_status(message: dict[str, Any]) -> bool:
    return message.get("type") == "job_status" and message["data"]["status"] in {"completed", "failed", "cancelled"}
