"""Pages: they render without auth; the browser holds the token in sessionStorage."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/websocket-test")
def websocket_test() -> str:
    """The built-in page that exercises ping, echo, subscribe and a demo job."""
    return render_template("websocket_test.html")
