"""WebSocket upgrades read without eventlet.wsgi's HTTP parsing (``app.realtime.upgrade``).

The app must see the same request either way: each case runs in a subprocess under
eventlet (monkey-patched, as ``python wsgi.py``), with two real ``eventlet.wsgi`` servers
on loopback ports — one with eventlet's own protocol, one with ``UpgradeFirstProtocol`` —
and an app that records the environ it was called with and answers as told.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HARNESS = """
import eventlet
eventlet.monkey_patch()
import json, socket
import eventlet.wsgi
from app.realtime import upgrade

seen = []
served_fast = []
stock_serve = upgrade.serve_upgrade
def counting(conn_state, server):
    fast = stock_serve(conn_state, server)
    served_fast.append(fast)
    return fast
upgrade.serve_upgrade = counting

def app(environ, start_response):
    seen.append(dict(environ))
    start_response("400 Bad Request", [("Content-Type", "text/plain"), ("X-Seen", "yes")])
    return [b"no upgrade here"]

def start(protocol):
    listener = eventlet.listen(("127.0.0.1", 0))
    eventlet.spawn(eventlet.wsgi.server, listener, app, protocol=protocol, log_output=False)
    return listener.getsockname()[1]

stock_port = start(eventlet.wsgi.HttpProtocol)
fast_port = start(upgrade.UpgradeFirstProtocol)

def exchange(port, raw, pieces=1):
    client = socket.create_connection(("127.0.0.1", port))
    step = max(1, len(raw) // pieces)
    for at in range(0, len(raw), step):
        client.sendall(raw[at:at + step])
        eventlet.sleep(0.05)
    client.settimeout(5)
    answer = b""
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        answer += chunk
        if b"no upgrade here" in answer:
            break
    client.close()
    return answer

OBJECTS = ("wsgi.input", "eventlet.input", "wsgi.errors", "eventlet.posthooks", "eventlet.set_idle")
OBJECTS += ("herald.socket_let_go",)

def plain(environ):
    return {k: v for k, v in environ.items() if k not in OBJECTS and k not in ("REMOTE_PORT", "SERVER_PORT")}

UPGRADE = (
    b"GET /socket.io/?EIO=4&transport=websocket&x=%41 HTTP/1.1\\r\\n"
    b"Host: 127.0.0.1\\r\\n"
    b"Connection: Upgrade\\r\\n"
    b"Upgrade: websocket\\r\\n"
    b"Sec-WebSocket-Version: 13\\r\\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
    b"X-Twice: one\\r\\n"
    b"X-Twice: two\\r\\n"
    b"X_Sneaky: dropped\\r\\n"
    b"Origin:   http://127.0.0.1  \\r\\n"
    b"\\r\\n"
)
"""


def run(body: str) -> None:
    script = HARNESS + textwrap.dedent(body) + "\nprint('ok')\n"
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_an_upgrade_request_reaches_the_app_as_eventlet_would_build_it():
    run(
        """
        exchange(stock_port, UPGRADE)
        answer = exchange(fast_port, UPGRADE)
        assert served_fast == [True], served_fast
        stock, fast = seen
        assert plain(fast) == plain(stock), (plain(fast), plain(stock))
        assert fast["HTTP_X_TWICE"] == "one,two" and "HTTP_X_SNEAKY" not in fast
        assert fast["PATH_INFO"] == "/socket.io/" and fast["QUERY_STRING"] == "EIO=4&transport=websocket&x=%41"
        assert fast["wsgi.input"].read() == b"" and fast["eventlet.input"].get_socket() is not None
        # The app's answer goes out whole, and the connection closes after it.
        head, _, body = answer.partition(b"\\r\\n\\r\\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\\r\\n"), answer
        assert b"X-Seen: yes" in head and b"Connection: close" in head and body == b"no upgrade here"
        """
    )


def test_anything_but_a_whole_plain_upgrade_takes_eventlets_own_path():
    run(
        """
        requests = [
            b"GET /api/health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n",  # no upgrade asked
            b"POST /socket.io/ HTTP/1.1\\r\\nUpgrade: websocket\\r\\nContent-Length: 0\\r\\n\\r\\n",
            UPGRADE.replace(b"Host: 127.0.0.1\\r\\n", b"Host: 127.0.0.1\\r\\n folded\\r\\n"),
            UPGRADE.replace(b"HTTP/1.1", b"HTTP/2.0"),
            UPGRADE.replace(b"GET /socket.io/", b"GET /ws"),  # other paths: their answers may stream
            UPGRADE.replace(b"&x=%41", b"&x=\\x01"),  # a control character in the target
            UPGRADE.replace(b"X-Twice: one", b"X Twice: one"),  # a header name that is no token
            UPGRADE.replace(b"Sec-WebSocket-Version: 13\\r\\n", b""),  # hixie-76 reads a body
        ]
        for raw in requests:
            exchange(fast_port, raw)
        assert served_fast == [False] * len(requests), served_fast
        # A request head cut across packets: eventlet.wsgi reads it, from the first byte.
        exchange(fast_port, UPGRADE, pieces=3)
        assert served_fast[-1] is False and seen[-1]["QUERY_STRING"] == "EIO=4&transport=websocket&x=%41"
        """
    )
