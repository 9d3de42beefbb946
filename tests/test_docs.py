"""docs/PROTOCOL.md names every REST route and every Socket.IO event Herald handles."""

from __future__ import annotations

import re
from pathlib import Path

from app.extensions import socketio

PROTOCOL = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text()


def test_every_api_route_is_documented(app):
    documented = set(re.findall(r"`(?:GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", PROTOCOL))
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api") or rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)
        if path not in documented:
            missing.append(path)
    assert not missing, f"routes missing from docs/PROTOCOL.md: {sorted(set(missing))}"


def test_every_socketio_event_is_documented(app):
    registered = {name for name, _handler, _ns in socketio.handlers} | set(socketio.server.handlers.get("/", {}))
    events = registered - {"connect", "disconnect", "*"}
    missing = [name for name in events if f"`{name}`" not in PROTOCOL]
    assert not missing, f"Socket.IO events missing from docs/PROTOCOL.md: {sorted(missing)}"
