"""A tiny real HTTP service for API test cases, on a free 127.0.0.1 port in a thread."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TargetService:
    """Login, a protected resource, a flaky endpoint (503 once, then 200), a list; counts hits."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        self.flaky_calls = 0
        #: ``/gate`` answers only once this is set (lets a test act while a case runs).
        self.gate = threading.Event()
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                service.record("GET", self.path)
                if self.path == "/users/7":
                    if self.headers.get("Authorization") != "Bearer s3cr3t-token":
                        return self._send(401, {"error": "unauthorized"})
                    return self._send(200, {"id": 7, "name": "alice", "roles": ["admin", "dev"]})
                if self.path == "/flaky":
                    with service.lock:
                        service.flaky_calls += 1
                        calls = service.flaky_calls
                    return self._send(503 if calls == 1 else 200, {"ok": calls > 1, "calls": calls})
                if self.path == "/gate":
                    opened = service.gate.wait(60)
                    return self._send(200 if opened else 504, {"opened": opened})
                if self.path.startswith("/items"):
                    return self._send(200, {"items": [1, 2, 3], "count": 3})
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://example.com/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                service.record("POST", self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/login" and body.get("password") == "hunter22":
                    return self._send(200, {"token": "s3cr3t-token", "user": {"id": 7}})
                return self._send(401, {"error": "bad login"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def record(self, method: str, path: str) -> None:
        with self.lock:
            self.hits.append((method, path))

    def start(self) -> TargetService:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def login_case_yaml(base_url: str, *, websocket: str = "") -> str:
    """Extraction, substitution, a retry that recovers and a failing assertion."""
    return f"""\
name: user flow
description: log in, read the user, survive a flaky endpoint, check the items
config:
  base_url: {base_url}
  timeout: 10
  variables:
    user_name: alice
{websocket}
steps:
  - name: login
    request:
      method: POST
      url: /login
      json: {{username: "${{user_name}}", password: hunter22}}
    validate:
      - status_code: 200
    extract:
      token: $.token
      user_id: $.user.id
  - name: read user
    request:
      url: /users/${{user_id}}
      headers: {{Authorization: "Bearer ${{token}}"}}
    validate:
      - eq: [$.name, "${{user_name}}"]
      - contains: [$.roles, admin]
  - name: flaky
    retry: {{times: 2, delay: 0.01}}
    request:
      url: /flaky
    validate:
      - status_code: 200
  - name: items
    request:
      url: /items
    validate:
      - eq: [$.count, 4]
"""


def gated_case_yaml(base_url: str, name: str = "gated") -> str:
    """A passing case whose second step waits for ``TargetService.gate``."""
    return f"""\
name: {name}
config: {{base_url: "{base_url}", timeout: 60}}
steps:
  - name: items
    request: {{url: /items}}
    validate: [status_code: 200, eq: [$.count, 3]]
  - name: wait for the gate
    request: {{url: /gate}}
    validate: [status_code: 200]
"""
