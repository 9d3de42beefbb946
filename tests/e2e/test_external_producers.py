"""An external job in the browser: its page follows what a producer outside Herald reports
(progress, log lines, the end) live, with no reload."""

from __future__ import annotations

from typing import Any

from tests.helpers import wait_for
from tests.integration.conftest import ServerProcess

from .conftest import screenshot, sign_in
from .test_pages import page_log_lines


def report(server: ServerProcess, producer: str, job_id: int, *items: dict[str, Any]) -> None:
    response = server.api("POST", f"/api/jobs/{job_id}/report", producer, json={"items": list(items)})
    assert response.status_code == 200, response.text


def test_the_job_page_shows_an_external_jobs_progress_live(page: Any, server: ServerProcess) -> None:
    token = server.login("alice")
    created = server.api("POST", "/api/jobs", token, json={"kind": "external", "name": "nightly import", "total": 200})
    job_id, producer = created.json()["job"]["id"], created.json()["producer_token"]
    sign_in(page, f"/jobs/{job_id}")
    page.locator(".badge").filter(has_text="pending").first.wait_for()
    assert page.locator("#job-kind").inner_text() == "External"
    page.evaluate("window.__sameDocument = true")
    bar = page.get_by_role("progressbar", name=f"Job {job_id} progress")

    report(server, producer, job_id, {"n": 1, "type": "progress", "current": 50, "message": "reading"})
    page.locator(".badge").filter(has_text="running").first.wait_for()
    page.wait_for_function(
        f"() => document.querySelector('progress[aria-label=\"Job {job_id} progress\"]')"
        "?.getAttribute('aria-valuenow') === '25'"
    )
    report(
        server,
        producer,
        job_id,
        {"n": 2, "type": "log", "message": "batch 1 imported"},
        {"n": 3, "type": "progress", "current": 150},
    )
    wait_for(lambda: "batch 1 imported" in page_log_lines(page), timeout=30)
    page.wait_for_function(
        f"() => document.querySelector('progress[aria-label=\"Job {job_id} progress\"]')"
        "?.getAttribute('aria-valuenow') === '75'"
    )
    report(
        server,
        producer,
        job_id,
        {"n": 4, "type": "progress", "current": 200},
        {"n": 5, "type": "status", "status": "completed", "result": {"rows": 200}},
    )
    page.locator(".badge").filter(has_text="completed").first.wait_for()
    assert bar.get_attribute("aria-valuenow") == "100"
    assert page.evaluate("window.__sameDocument") is True  # live, not reloaded
    screenshot(page, "external-job-completed")
