"""The hub reader (``app.realtime.hub_reader``): an Engine.IO WebSocket served with no greenlet.

Each case runs in a subprocess under eventlet (monkey-patched, as ``python wsgi.py``): a
real Engine.IO session whose WebSocket is one end of a socket pair, handed to the hub; the
test's "client" writes masked frames on the other end, cut wherever it likes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HARNESS = """
import eventlet
eventlet.monkey_patch()
import os, socket, struct, sys, time
from types import SimpleNamespace
import engineio
from engineio import socket as eio_socket
from eventlet.websocket import RFC6455WebSocket
from eventlet.greenio import GreenSocket
from app.realtime.eventlet_websocket import install_eventlet_websocket, _Drain
from app.realtime import hub_reader

eio = engineio.Server(async_mode="eventlet", ping_interval=PING, ping_timeout=PING, max_http_buffer_size=4096)
install_eventlet_websocket(SimpleNamespace(eio=eio))
got, closed = [], []
eio.on("message", lambda sid, data: got.append(data))
eio.on("disconnect", lambda sid, reason: closed.append(reason))
slots = eventlet.semaphore.Semaphore(10)
hub_reader.register_connection_slots(slots)

counter = iter(range(1, 1000))

def session():
    raw_end, client = eventlet.patcher.original("socket").socketpair()
    server_end = GreenSocket(raw_end)  # as eventlet.wsgi accepts: one green layer over a real socket
    client = GreenSocket(client)
    sid = f"sid{next(counter)}"
    s = eio_socket.Socket(eio, sid)
    eio.sockets[sid] = s
    s.connected = s.upgraded = True
    ws = RFC6455WebSocket(server_end, {"PATH_INFO": "/socket.io/"}, max_frame_length=4096)
    assert hub_reader.hand_over(s, ws, _Drain)
    return s, client

def frame(payload, opcode=1, final=True, mask=b"abcd"):
    data = payload.encode() if isinstance(payload, str) else payload
    head = bytes([(0x80 if final else 0) | opcode])
    n = len(data)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))

def read_frames(client, count, timeout=5.0):
    client.settimeout(timeout)
    out, buf = [], b""
    while len(out) < count:
        chunk = client.recv(65536)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            at = 2
            if n == 126:
                n, at = struct.unpack("!H", buf[2:4])[0], 4
            if len(buf) < at + n:
                break
            out.append((buf[0] & 0x0F, buf[at:at + n]))
            buf = buf[at + n:]
    return out

def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        eventlet.sleep(0.01)
    return False
"""


def run(body: str, ping: float = 5.0) -> None:
    script = HARNESS.replace("PING", repr(ping)) + textwrap.dedent(body) + "\nprint('ok')\n"
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_frames_cut_anywhere_arrive_whole_and_in_order():
    run(
        """
        s, client = session()
        stream = frame("4hello") + frame("4wor", final=False) + frame("ld", opcode=0) + frame("4" + "x" * 300)
        for i in range(0, len(stream), 3):  # three bytes at a time
            client.sendall(stream[i:i + 3])
            eventlet.sleep(0.001)
        assert wait_for(lambda: len(got) == 3), got
        assert got == ["hello", "world", "x" * 300], got
        """
    )


def test_an_idle_handed_over_connection_keeps_no_greenlet():
    run(
        """
        import gc, greenlet
        def live():
            return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead)
        before = live()
        sessions = [session() for _ in range(5)]
        eventlet.sleep(0.1)
        assert live() - before <= 1, (before, live())
        assert slots.counter == 5
        """
    )


def test_a_ping_frame_gets_its_pong_and_a_close_frame_ends_the_session():
    run(
        """
        s, client = session()
        client.sendall(frame(b"hi", opcode=9))
        assert read_frames(client, 1) == [(0xA, b"hi")]
        client.sendall(frame(struct.pack("!H", 1000), opcode=8))
        frames = read_frames(client, 1)
        assert frames and frames[0][0] == 8, frames
        assert wait_for(lambda: closed == ["transport close"]), closed
        assert wait_for(lambda: slots.counter == 10) and s.sid not in eio.sockets
        """
    )


def test_the_client_going_away_closes_the_session_and_frees_its_slot():
    run(
        """
        s, client = session()
        client.close()
        assert wait_for(lambda: closed == ["transport close"]), closed
        assert wait_for(lambda: slots.counter == 10) and s.herald_ws is None
        """
    )


def test_a_server_close_goes_through_the_drain_and_stops_the_watch():
    run(
        """
        from engineio import packet
        s, client = session()
        fileno = s.herald_ws.socket.fileno()
        s.send(packet.Packet(packet.MESSAGE, data="bye"))
        s.close(wait=False, abort=False)
        frames = read_frames(client, 3)
        assert [f[1] for f in frames[:2]] == [b"4bye", b"1"], frames  # the message, Engine.IO CLOSE
        assert frames[2][0] == 8, frames  # the WebSocket close frame
        assert wait_for(lambda: slots.counter == 10)
        assert fileno not in eventlet.hubs.get_hub().listeners["read"]
        assert closed == ["server disconnect"], closed
        """
    )


def test_a_silent_client_times_out_as_the_stock_read_timeout():
    run(
        """
        s, client = session()
        assert not wait_for(lambda: closed, timeout=0.25)  # 0.2 + 0.2 s of silence allowed
        assert wait_for(lambda: closed == ["transport close"], timeout=3), closed
        assert wait_for(lambda: slots.counter == 10)
        """,
        ping=0.2,
    )


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        ("frame(b'x' * 5000)", 1009),  # over the frame limit
        ("frame(b'4hi')[:1] + bytes([0x02]) + frame(b'4hi')[2:]", 1002),  # not masked
        ("frame(b'\\xff\\xfe', opcode=1)", 1007),  # text that is not UTF-8
        ("frame(b'4hi', opcode=0)", 1002),  # a continuation with nothing to continue
    ],
)
def test_a_forbidden_frame_is_answered_with_eventlets_close_code(stream, code):
    run(
        f"""
        s, client = session()
        client.sendall({stream})
        frames = read_frames(client, 2)
        closes = [f for f in frames if f[0] == 8]
        assert closes and struct.unpack("!H", closes[0][1][:2])[0] == {code}, frames
        assert wait_for(lambda: closed == ["transport close"]), closed
        assert not got
        """
    )


def test_stopping_the_server_ends_every_connection_the_hub_serves():
    run(
        """
        kept = [session() for _ in range(3)]  # the clients stay open: the server ends them
        eventlet.sleep(0.05)
        assert hub_reader.close_all(timeout=5) == 3
        assert closed == ["transport close"] * 3 and slots.counter == 10 and not hub_reader._open
        """
    )
