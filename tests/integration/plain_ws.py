"""Helpers for plain-WebSocket tests: a server with test kinds, and a JSON client."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import websockets

from .conftest import ServerProcess, launch

SCRIPT = Path(__file__).with_name("serve_with_test_kinds.py")


class KindsServer(ServerProcess):
    """The real server, started through ``serve_with_test_kinds.py``."""

    script = str(SCRIPT)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)


def start_server(tmp_path: Path, **env: str) -> Iterator[KindsServer]:
    """Fixture body: a fresh server (users alice and bob) that also knows the test-only kinds."""
    yield from launch(tmp_path, KindsServer, **env)


async def connect(server: ServerProcess, path: str, token: str | None = None, **kwargs: Any) -> Any:
    """Open a plain WebSocket, with ``?token=`` when a token is given."""
    url = server.url.replace("http://", "ws://", 1) + path
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


async def socketio_connect(server: ServerProcess, token: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """A Socket.IO session spoken by hand over ``websockets``: frames are read in wire order
    (python-socketio's client runs each event handler in a thread of its own, so the order
    its handlers see is not the order that came). Returns the socket and the CONNECT answer
    (``{"sid"}``, or ``connect_error``'s ``{"message", "data"}``)."""
    kwargs.setdefault("open_timeout", 20)
    url = server.url.replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket&token=" + token
    ws = await websockets.connect(url, **kwargs)
    opened = await asyncio.wait_for(ws.recv(), 15)
    assert opened.startswith("0{"), opened
    await ws.send("40")
    while True:
        packet = await asyncio.wait_for(ws.recv(), 15)
        if packet.startswith(("40", "44")):
            return ws, dict(json.loads(packet[2:]))
        if packet == "2":
            await ws.send("3")


async def socketio_emit(ws: Any, event: str, payload: Any, ack_id: int | None = None) -> None:
    """One Socket.IO EVENT packet (with an ack id when given)."""
    await ws.send("42" + ("" if ack_id is None else str(ack_id)) + json.dumps([event, payload]))


async def socketio_next(ws: Any, timeout: float = 15.0) -> tuple[str, Any]:
    """The next event ``(name, payload)`` or ack ``("ack", (id, [args]))``, in wire order;
    Engine.IO pings are answered on the way."""
    while True:
        packet = await asyncio.wait_for(ws.recv(), timeout)
        if packet == "2":
            await ws.send("3")
        elif packet.startswith("42"):
            event, *args = json.loads(packet[2:])
            return event, args[0] if args else None
        elif packet.startswith("43"):
            start = packet.index("[")
            return "ack", (int(packet[2:start]), json.loads(packet[start:]))
        elif packet.startswith(("41", "1")):
            raise websockets.ConnectionClosedOK(None, None)


def is_final_status(message: dict[str, Any]) -> bool:
    return message.get("type") == "job_status" and message["data"]["status"] in {"completed", "failed", "cancelled"}


class RawClient:
    """A hand-made WebSocket client on a blocking socket: it reads only when told to.

    Used to play a client that stops reading (the ``websockets`` library keeps reading
    by itself) and one that never answers pings.
    """

    def __init__(self, server: KindsServer, path: str, *, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(60)
        self.sock.connect(("127.0.0.1", server.port))
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n", 1)[0].decode()

    def send_json(self, message: Any) -> None:
        """One masked text frame (clients must mask)."""
        self.send_text(json.dumps(message))

    def send_text(self, text: str) -> None:
        """One masked text frame of ``text`` as is (e.g. a Socket.IO packet)."""
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """``(opcode, payload)`` of every frame until the server closes the connection."""
        while True:
            while True:
                frame = self._parse()
                if frame is None:
                    break
                yield frame
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                return
            if not chunk:
                return
            self.buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            if len(data) < 10:
                return None
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + length:
            return None
        self.buffer = data[offset + length :]
        return opcode, data[offset : offset + length]

    def close(self) -> None:
        self.sock.close()
