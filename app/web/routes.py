"""Pages: they render without auth; each tab holds its access token in memory (got from
the HttpOnly session cookie, see ``auth/session.py``).

Each page's script sends the browser to ``/login?next=…`` when the tab has no token, so a
token never travels in a URL and the server never renders anything private.
"""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/")
def dashboard() -> str:
    """The jobs dashboard: New-job form, live list of the user's jobs, filters."""
    return render_template("dashboard.html")


@bp.get("/login")
def login() -> str:
    """Sign in; the script returns to ``next`` (a same-site path) afterwards."""
    return render_template("login.html")


@bp.get("/jobs/<id:job_id>")
def job_page(job_id: int) -> str:
    """One job live: progress, log, history, result, artifacts, actions."""
    return render_template("job.html", job_id=job_id)


@bp.get("/upload")
def upload() -> str:
    """Upload a file with live progress, then import it and report on it."""
    return render_template("upload.html")


@bp.get("/websocket-test")
def websocket_test() -> str:
    """The built-in page that exercises ping, echo, subscribe and a demo job."""
    return render_template("websocket_test.html")


@bp.get("/test-cases")
def test_cases() -> str:
    """Your API test cases: run one, run a selection as a batch, create, edit."""
    return render_template("test_cases.html")


@bp.get("/test-cases/new")
def new_test_case() -> str:
    """Write a new test case in YAML; errors name their line."""
    return render_template("test_case.html", case_id=None)


@bp.get("/test-cases/<id:case_id>")
def test_case(case_id: int) -> str:
    """Edit one test case's YAML, save it, run it."""
    return render_template("test_case.html", case_id=case_id)
