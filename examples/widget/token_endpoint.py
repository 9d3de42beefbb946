"""The host site's half of the widget: a token endpoint, here as a small Flask blueprint.

The browser never sees a Herald credential. The widget POSTs ``{"job_id": 42}`` to this
route with the visitor's own session cookie; the route checks that the visitor may watch
that job, then asks Herald server-side and answers Herald's JSON unchanged — a stream
token good for 60 s. Only a Cancel click sends ``{"job_id": 42, "cancel": true}``, and only
then, if the visitor may cancel, does the route ask Herald for a cancel token: a page that
merely shows a job never holds one. The page shows the Cancel button by rendering
``<herald-progress … cancelable>`` for visitors your rule lets cancel.

The site's Herald credential is a service user's name and password: :class:`HeraldCredential`
logs in once, keeps the access and refresh tokens in memory, and when Herald answers
``401`` (``token_expired`` after ``JWT_ACCESS_TOKEN_MINUTES``, or ``token_revoked`` /
``token_invalid``) it refreshes them — or logs in again if the refresh token is refused too
— and asks once more. Set ``HERALD_URL``, ``HERALD_USERNAME`` and ``HERALD_PASSWORD`` in
the site's config (from its environment, e.g. ``app.config.from_prefixed_env()``), and
register the blueprint with ``app.register_blueprint(bp)``.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from flask import Blueprint, current_app, request, session

bp = Blueprint("herald_widget", __name__)

#: Herald's 401 codes that a refreshed access token (or a new login) cures.
RENEWABLE = frozenset({"token_expired", "token_revoked", "token_invalid"})


class HeraldUnavailable(Exception):
    """Herald could not be reached, or refused the site's own login."""


class HeraldCredential:
    """A service user's Herald session: logs in on first use, refreshes when refused."""

    def __init__(self, url: str, username: str, password: str, *, http: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self._username = username
        self._password = password
        self._http = http or requests.Session()
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        """POST ``body`` to Herald's ``path`` with the access token; renewed once if refused."""
        token = self._current()
        answer = self._post(path, body, token)
        if answer.status_code == 401 and _error_code(answer) in RENEWABLE:
            answer = self._post(path, body, self._renewed(token))
        return answer

    def _post(self, path: str, body: dict[str, Any], token: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return self._http.post(f"{self.url}{path}", json=body, headers=headers, timeout=10)
        except requests.RequestException as exc:
            raise HeraldUnavailable(f"Herald is unreachable ({exc})") from exc

    def _current(self) -> str:
        with self._lock:
            return self._access if self._access is not None else self._login()

    def _renewed(self, refused: str) -> str:
        """A fresh access token: another request's renewal, a refresh, or a new login."""
        with self._lock:
            if self._access is not None and self._access != refused:
                return self._access  # renewed meanwhile by a concurrent request
            if self._refresh is not None:
                answer = self._post("/api/auth/refresh", {}, self._refresh)
                if answer.status_code == 200:
                    return self._keep(answer.json())
            return self._login()  # no refresh token, or Herald refused it (expired, revoked)

    def _login(self) -> str:
        answer = self._post("/api/auth/login", {"username": self._username, "password": self._password}, None)
        if answer.status_code != 200:
            self._access = self._refresh = None
            raise HeraldUnavailable(f"Herald refused the site's login ({_error_code(answer)})")
        return self._keep(answer.json())

    def _keep(self, tokens: dict[str, Any]) -> str:
        self._access = str(tokens["access_token"])
        self._refresh = tokens.get("refresh_token", self._refresh)
        return self._access


def _error_code(answer: requests.Response) -> str:
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{answer.status_code}"


def herald() -> HeraldCredential:
    """This site's one Herald credential (made from its config on first use)."""
    extensions = current_app.extensions
    if "herald_credential" not in extensions:
        config = current_app.config
        extensions["herald_credential"] = HeraldCredential(
            config["HERALD_URL"], config["HERALD_USERNAME"], config["HERALD_PASSWORD"]
        )
    credential: HeraldCredential = extensions["herald_credential"]
    return credential


def visitor_may_watch(user_id: Any, job_id: int) -> bool:
    """Your own rule: whose jobs may this visitor see? (Herald checks ownership too.)"""
    return user_id is not None and job_id in session.get("herald_jobs", [])


def visitor_may_cancel(user_id: Any, job_id: int) -> bool:
    """Your own rule for cancelling (render ``cancelable`` on the widget when it holds)."""
    return visitor_may_watch(user_id, job_id) and job_id in session.get("herald_cancellable_jobs", [])


def _refuse(status: int, code: str, message: str) -> tuple[dict[str, Any], int]:
    return {"error": {"code": code, "message": message, "details": {}}}, status


@bp.post("/herald/token")
def herald_token() -> tuple[dict[str, Any], int]:
    """Same-origin only: a JSON POST from another site needs a CORS preflight this route never answers."""
    body = request.get_json(silent=True) or {}
    job_id = body.get("job_id")
    user_id = session.get("user_id")
    if type(job_id) is not int or not visitor_may_watch(user_id, job_id):
        return _refuse(404, "not_found", "no such job")
    asked: dict[str, Any] = {"job_id": job_id}
    if body.get("cancel") is True:  # a Cancel click; watching never asks for a cancel token
        if not visitor_may_cancel(user_id, job_id):
            return _refuse(403, "forbidden", "you may not cancel this job")
        asked["cancel"] = True
    try:
        answer = herald().post("/api/stream-tokens", asked)
    except HeraldUnavailable as exc:
        current_app.logger.warning("herald token endpoint: %s", exc)
        return _refuse(503, "herald_unavailable", "progress is unavailable right now")
    return answer.json(), answer.status_code
