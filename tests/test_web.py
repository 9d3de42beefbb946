"""The server-rendered pages: they render without auth and carry no token or private data."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient


@pytest.mark.parametrize("path", ["/", "/login", "/jobs/1", "/upload", "/websocket-test"])
def test_page_renders_without_auth(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert b'role="status"' in response.data


def test_login_page_has_labelled_fields_and_sign_in_button(client: FlaskClient) -> None:
    html = client.get("/login").get_data(as_text=True)
    assert '<label for="username">Username</label>' in html
    assert '<label for="password">Password</label>' in html
    assert ">Sign in</button>" in html


def test_layout_links_the_websocket_test_page(client: FlaskClient) -> None:
    assert b'href="/websocket-test"' in client.get("/").data


def test_job_page_for_a_missing_job_still_renders_the_shell(client: FlaskClient) -> None:
    """Whether the job exists (and is yours) is the API's answer, given to the token holder."""
    response = client.get("/jobs/999999")
    assert response.status_code == 200
    assert b'data-job-id="999999"' in response.data


def test_static_client_is_served_as_a_module(client: FlaskClient) -> None:
    with client.get("/static/js/herald.js") as response:
        assert response.status_code == 200
        assert "javascript" in response.content_type
        assert b"export class HeraldConnection" in response.data
