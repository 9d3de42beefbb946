"""Browser routes get styled HTML error pages; ``/api`` keeps its JSON error body."""

from __future__ import annotations

import pytest


@pytest.fixture
def failing_app(app):
    """The app with a page and an API route that fail unexpectedly."""

    def boom():
        raise RuntimeError("boom")

    app.add_url_rule("/broken-page", "broken_page", boom)
    app.add_url_rule("/api/broken", "broken_api", boom)
    return app


def test_an_unknown_page_is_a_styled_404_with_a_link_home(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "Page not found" in html and "/no/such/page" in html
    assert 'href="/"' in html and "herald.css" in html  # the site's layout, a way home


def test_an_unknown_api_route_keeps_the_json_error(client):
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_a_page_that_fails_is_a_styled_500(failing_app, caplog):
    response = failing_app.test_client().get("/broken-page")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "Something went wrong" in html and 'href="/"' in html
    assert "boom" not in html  # no internals on the page
    assert any("unhandled error on GET /broken-page" in r.getMessage() for r in caplog.records)


def test_an_api_route_that_fails_keeps_the_json_500(failing_app):
    response = failing_app.test_client().get("/api/broken")
    assert response.status_code == 500
    assert response.get_json()["error"] == {
        "code": "internal_error",
        "message": "an unexpected error occurred; it has been logged",
        "details": None,
    }


def test_a_herald_error_on_the_api_is_unchanged(client):
    response = client.get("/api/jobs")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_missing"


def test_a_job_page_for_a_path_that_is_no_id_is_a_styled_400(client):
    response = client.get("/jobs/abc")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "Bad Request" in html and "whole number" in html and "/jobs/abc" in html
    assert 'href="/"' in html and "herald.css" in html
