"""``examples/widget/token_endpoint.py`` as written, in a host app of its own, asking the
in-process Herald through a ``requests`` adapter (every call it makes is recorded)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from requests.structures import CaseInsensitiveDict

from tests.integration.conftest import ROOT

HERALD_URL = "http://herald.test"
SERVICE_USER = "site-service"
PASSWORD = "service-password-1"


def load_example() -> ModuleType:
    path = ROOT / "examples" / "widget" / "token_endpoint.py"
    spec = importlib.util.spec_from_file_location("widget_token_endpoint", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ToFlask(requests.adapters.BaseAdapter):
    """Hands ``requests`` calls to a Flask test client; records ``(path, status)``."""

    def __init__(self, client: FlaskClient) -> None:
        super().__init__()
        self.client = client
        self.calls: list[tuple[str, int]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        answer = self.client.open(
            url.path,
            query_string=url.query,
            method=request.method or "GET",
            headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
            data=request.body,
        )
        self.calls.append((url.path, answer.status_code))
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.get_data()
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def example() -> ModuleType:
    return load_example()


@pytest.fixture
def herald_calls(client: FlaskClient) -> ToFlask:
    return ToFlask(client)


@pytest.fixture
def host(example: ModuleType, herald_calls: ToFlask, auth: Any) -> Iterator[FlaskClient]:
    """The host site: the example's blueprint, its credential talking to the in-process Herald."""
    auth.create_user(SERVICE_USER, PASSWORD)
    site = Flask("host_site")
    site.config.update(SECRET_KEY="host-secret", HERALD_URL=HERALD_URL)
    site.config.update(HERALD_USERNAME=SERVICE_USER, HERALD_PASSWORD=PASSWORD)
    http = requests.Session()
    http.mount(HERALD_URL, herald_calls)
    site.extensions["herald_credential"] = example.HeraldCredential(HERALD_URL, SERVICE_USER, PASSWORD, http=http)
    site.register_blueprint(example.bp)
    yield site.test_client()


def service_job(client: FlaskClient, auth: Any) -> int:
    token = auth.login(SERVICE_USER, PASSWORD)["access_token"]
    response = client.post(
        "/api/jobs",
        json={"kind": "simulate", "params": {"steps": 2000, "interval": 0.05}},
        headers=auth.headers(token),
    )
    assert response.status_code == 202
    return int(response.get_json()["job"]["id"])


def visitor(host: FlaskClient, job_id: int, *, may_cancel: bool = False) -> None:
    with host.session_transaction() as session:
        session.update(user_id=7, herald_jobs=[job_id], herald_cancellable_jobs=[job_id] if may_cancel else [])


@pytest.mark.parametrize("expired", ["access token", "refresh token too"])
def test_the_example_keeps_its_herald_credential_past_the_access_tokens_life(
    app: Flask, client: FlaskClient, auth: Any, host: FlaskClient, herald_calls: ToFlask, expired: str
) -> None:
    job_id = service_job(client, auth)
    visitor(host, job_id)
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = 1
    if expired == "refresh token too":
        app.config["JWT_REFRESH_TOKEN_EXPIRES"] = 1
    assert host.post("/herald/token", json={"job_id": job_id}).status_code == 200
    time.sleep(1.5)  # the access token the example holds has expired
    answer = host.post("/herald/token", json={"job_id": job_id})
    assert answer.status_code == 200 and answer.get_json()["scope"] == f"job:{job_id}"
    renewal = ["/api/auth/refresh"] if expired == "access token" else ["/api/auth/refresh", "/api/auth/login"]
    assert [path for path, _ in herald_calls.calls] == [
        "/api/auth/login",
        "/api/stream-tokens",
        "/api/stream-tokens",  # 401 token_expired
        *renewal,
        "/api/stream-tokens",
    ]
    assert herald_calls.calls[2][1] == 401
    client.post(f"/api/jobs/{job_id}/cancel", headers=auth.headers(auth.login(SERVICE_USER, PASSWORD)["access_token"]))


def test_the_example_answers_503_when_herald_refuses_its_login(
    client: FlaskClient, auth: Any, host: FlaskClient, example: ModuleType, herald_calls: ToFlask
) -> None:
    job_id = service_job(client, auth)
    visitor(host, job_id)
    http = requests.Session()
    http.mount(HERALD_URL, herald_calls)
    wrong = example.HeraldCredential(HERALD_URL, SERVICE_USER, "not-the-password", http=http)
    host.application.extensions["herald_credential"] = wrong
    answer = host.post("/herald/token", json={"job_id": job_id})
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "herald_unavailable"
    assert "token" not in answer.get_json()


def test_the_example_asks_for_a_cancel_token_only_for_a_cancel_the_visitor_may_make(
    client: FlaskClient, auth: Any, host: FlaskClient
) -> None:
    job_id = service_job(client, auth)
    visitor(host, job_id, may_cancel=True)
    watching = host.post("/herald/token", json={"job_id": job_id}).get_json()
    assert watching["can_cancel"] is False and "cancel_token" not in watching
    cancelling = host.post("/herald/token", json={"job_id": job_id, "cancel": True}).get_json()
    assert cancelling["can_cancel"] is True and cancelling["cancel_token"]
    visitor(host, job_id, may_cancel=False)
    refused = host.post("/herald/token", json={"job_id": job_id, "cancel": True})
    assert refused.status_code == 403 and "cancel_token" not in refused.get_json()
    cancelled = client.post(
        f"/api/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {cancelling['cancel_token']}"}
    )
    assert cancelled.status_code == 202


def test_the_example_refuses_a_job_the_visitor_may_not_watch(host: FlaskClient) -> None:
    visitor(host, 1)
    for body in ({"job_id": 2}, {"job_id": True}, {"job_id": "1"}, {}):
        answer = host.post("/herald/token", json=body)
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"
