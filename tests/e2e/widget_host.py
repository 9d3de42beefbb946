"""A host site on its own loopback port (another origin than Herald's), and a TCP proxy
the tests can cut, for the widget and EventSource browser tests.

The host serves the pages and a **token endpoint** like a real site's backend: it signs
in to Herald as the user its query names (standing in for its own session) and asks
``POST /api/stream-tokens`` server-side, answering Herald's JSON as it is. Like
``examples/widget/token_endpoint.py`` it asks for a cancel token only when the widget asks
(a Cancel click) and the page's query says the visitor may cancel (``cancel=1``).
"""

from __future__ import annotations

import html
import importlib.util
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from flask import Flask, Response, request, session
from werkzeug.serving import make_server

from tests.integration.conftest import PASSWORD, ROOT

#: The documented plain-HTML example, served as written but for its three placeholders.
PLAIN_EXAMPLE = ROOT / "examples" / "widget" / "plain.html"
#: The documented token endpoint, run as written by :class:`ExampleSite`.
TOKEN_ENDPOINT_EXAMPLE = ROOT / "examples" / "widget" / "token_endpoint.py"

WIDGET_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>host page</title>
<script src="{herald}/static/widget/herald-progress.js"></script></head>
<body><h1>A page of another site</h1>
<herald-progress job="{job}" token-endpoint="{endpoint}" log-lines="5"{cancelable}></herald-progress>
<script>
  window.heraldErrors = [];
  document.addEventListener("herald-error", (event) => window.heraldErrors.push(event.detail));
</script>
</body></html>"""

EVENTSOURCE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>eventsource</title></head><body>
<script>
  window.received = []; window.opens = 0; window.errors = 0;
  const source = new EventSource({url});
  window.source = source;
  for (const type of ["snapshot", "job_status", "job_log", "job_progress", "resync"]) {{
    source.addEventListener(type, (event) => {{
      window.received.push({{type, lastEventId: event.lastEventId, message: JSON.parse(event.data)}});
    }});
  }}
  source.onopen = () => {{ window.opens += 1; }};
  source.onerror = () => {{ window.errors += 1; }};
</script></body></html>"""


class HostSite:
    """The host site: ``/widget.html``, ``/eventsource.html`` and ``POST /token``."""

    def __init__(self) -> None:
        self.herald_url = ""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        #: Every answer the token endpoint gave: (status, body).
        self.token_answers: list[tuple[int, Any]] = []
        #: Every body POSTed to the token endpoint.
        self.token_requests: list[dict[str, Any]] = []
        #: When set, the endpoint answers this (200) instead of asking Herald: a broken host.
        self.token_override: dict[str, Any] | None = None

    def start(self) -> HostSite:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def widget_page(
        self, job_id: int, user: str = "alice", *, cancel: bool = False, may_cancel: bool | None = None
    ) -> str:
        """The widget for ``job_id``; ``cancel``: the page sets ``cancelable`` and its endpoint
        lets the visitor cancel (``may_cancel`` apart: the endpoint's rule alone)."""
        may_cancel = cancel if may_cancel is None else may_cancel
        endpoint = f"/token?user={user}" + ("&cancel=1" if may_cancel else "")
        quoted = requests.utils.quote(endpoint, safe="")
        return f"{self.origin}/widget.html?job={job_id}&endpoint={quoted}" + ("&cancelable=1" if cancel else "")

    def eventsource_page(self, stream_url: str) -> str:
        return f"{self.origin}/eventsource.html?url={requests.utils.quote(stream_url, safe='')}"

    def _token(self, user: str, body: dict[str, Any], may_cancel: bool) -> tuple[int, Any]:
        """What a real backend does: its own Herald credentials, the request server-side."""
        self.token_requests.append(body)
        if self.token_override is not None:
            return 200, self.token_override
        cancel = body.get("cancel") is True
        if cancel and not may_cancel:
            return 403, {"error": {"code": "forbidden", "message": "you may not cancel this job", "details": {}}}
        login = requests.post(
            f"{self.herald_url}/api/auth/login", json={"username": user, "password": PASSWORD}, timeout=10
        )
        if login.status_code != 200:
            return login.status_code, login.json()
        asked = {"job_id": body.get("job_id"), **({"cancel": True} if cancel else {})}
        answer = requests.post(
            f"{self.herald_url}/api/stream-tokens",
            json=asked,
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
            timeout=10,
        )
        self.token_answers.append((answer.status_code, answer.json()))
        return answer.status_code, answer.json()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                if url.path == "/widget.html":
                    page = WIDGET_PAGE.format(
                        herald=site.herald_url,
                        job=html.escape(query["job"]),
                        endpoint=html.escape(query["endpoint"]),
                        cancelable=" cancelable" if query.get("cancelable") == "1" else "",
                    )
                elif url.path == "/plain-example.html":
                    page = (
                        PLAIN_EXAMPLE.read_text()
                        .replace("https://herald.example", site.herald_url)
                        .replace('job="42"', f'job="{int(query["job"])}"')
                        .replace('token-endpoint="/herald/token"', 'token-endpoint="/token?user=alice"')
                    )
                elif url.path == "/eventsource.html":
                    page = EVENTSOURCE_PAGE.format(url=json.dumps(query["url"]))
                else:
                    self._send(404, b"not found", "text/plain")
                    return
                self._send(200, page.encode(), "text/html; charset=utf-8")

            def do_POST(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if url.path != "/token":
                    self._send(404, b"{}", "application/json")
                    return
                status, answer = site._token(query.get("user", "alice"), body, query.get("cancel") == "1")
                self._send(status, json.dumps(answer).encode(), "application/json")

        return Handler


class ExampleSite:
    """A host site whose token endpoint is ``examples/widget/token_endpoint.py`` as written
    (a Flask app; its Herald credential is alice's name and password). ``/widget.html``
    signs the visitor in (the session the example's rules read) and renders the widget,
    ``cancelable`` when the query lets the visitor cancel."""

    def __init__(self) -> None:
        spec = importlib.util.spec_from_file_location("example_token_endpoint", TOKEN_ENDPOINT_EXAMPLE)
        assert spec is not None and spec.loader is not None
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        self.app = Flask("example_site")
        self.app.config.update(SECRET_KEY="example-site", HERALD_USERNAME="alice", HERALD_PASSWORD=PASSWORD)
        self.app.register_blueprint(example.bp)
        #: Every token request and its answer: (body asked, status, answer).
        self.exchanges: list[tuple[dict[str, Any], int, dict[str, Any]]] = []
        self.app.add_url_rule("/widget.html", view_func=self._page)
        self.app.after_request(self._record)
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.origin = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> ExampleSite:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def page(self, job_id: int, *, cancel: bool = False) -> str:
        return f"{self.origin}/widget.html?job={job_id}" + ("&cancel=1" if cancel else "")

    def _page(self) -> str:
        job_id = int(request.args["job"])
        cancel = request.args.get("cancel") == "1"
        session.update(user_id=1, herald_jobs=[job_id], herald_cancellable_jobs=[job_id] if cancel else [])
        return WIDGET_PAGE.format(
            herald=self.app.config["HERALD_URL"],
            job=job_id,
            endpoint="/herald/token",
            cancelable=" cancelable" if cancel else "",
        )

    def _record(self, response: Response) -> Response:
        if request.path == "/herald/token":
            self.exchanges.append((request.get_json(silent=True) or {}, response.status_code, response.get_json()))
        return response


class CuttableProxy:
    """A loopback TCP proxy to Herald whose open connections the test can cut at once
    (a network failure as the browser sees it: its EventSource reconnects by itself)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        #: Every socket ever opened, closed by ``stop``.
        self._all: list[socket.socket] = []
        self._stopped = False

    def start(self) -> CuttableProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
                self._all += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every connection open now (new ones go through)."""
        with self._lock:
            victims, self._open = self._open, []
        for sock in victims:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()
        with self._lock:
            for sock in self._all:
                sock.close()
