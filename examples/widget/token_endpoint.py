"""The host site's half of the widget: a token endpoint, here as a small Flask blueprint.

The browser never sees a Herald access token. The widget POSTs ``{"job_id": 42}`` (or
``{"job_id": 42, "cancel": true}`` when its Cancel button is clicked) to this route, with
the visitor's own session cookie; the route checks that the visitor may watch (and cancel)
that job, then asks Herald server-side with the site's Herald credentials and answers
Herald's JSON unchanged — a stream token good for 60 s, and a cancel token only when it
asked for one. Register it with ``app.register_blueprint(bp)``; set ``HERALD_URL`` and
``HERALD_ACCESS_TOKEN`` (the Herald user the jobs belong to) in the site's config.
"""

from __future__ import annotations

from typing import Any

import requests
from flask import Blueprint, abort, current_app, request, session

bp = Blueprint("herald_widget", __name__)


def visitor_may_watch(user_id: Any, job_id: int) -> bool:
    """Your own rule: whose jobs may this visitor see? (Herald checks ownership too.)"""
    return user_id is not None and job_id in session.get("herald_jobs", [])


def visitor_may_cancel(user_id: Any, job_id: int) -> bool:
    """Your own rule for the Cancel button (without it the widget shows none)."""
    return visitor_may_watch(user_id, job_id)


@bp.post("/herald/token")
def herald_token() -> tuple[Any, int]:
    """Same-origin only: a JSON POST from another site needs a CORS preflight this route never answers."""
    body = request.get_json(silent=True) or {}
    job_id = body.get("job_id")
    user_id = session.get("user_id")
    if not isinstance(job_id, int) or not visitor_may_watch(user_id, job_id):
        abort(404)
    asked: dict[str, Any] = {"job_id": job_id}
    if visitor_may_cancel(user_id, job_id):
        asked["cancel"] = True  # Herald then answers can_cancel and a one-job cancel token
    answer = requests.post(
        f"{current_app.config['HERALD_URL']}/api/stream-tokens",
        json=asked,
        headers={"Authorization": f"Bearer {current_app.config['HERALD_ACCESS_TOKEN']}"},
        timeout=10,
    )
    return answer.json(), answer.status_code
