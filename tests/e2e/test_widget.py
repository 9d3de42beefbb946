"""Server-Sent Events and the ``<herald-progress>`` widget in Chromium, across origins.

Herald runs on one loopback port; the host site (``widget_host.HostSite``: its pages and
a token endpoint that asks Herald server-side) on another, listed in
``CORS_ALLOWED_ORIGINS``. Every check compares with the job's stored history.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.conftest import ServerProcess, launch
from tests.sse_client import StreamReader

from .conftest import TIMEOUT_MS, screenshot
from .widget_host import CuttableProxy, ExampleSite, HostSite

LONG_MS = 90_000


@pytest.fixture
def host() -> Iterator[HostSite]:
    site = HostSite().start()
    yield site
    site.stop()


def start_herald(tmp_path: Path, host: HostSite, **env: str) -> Iterator[ServerProcess]:
    for proc in launch(tmp_path, CORS_ALLOWED_ORIGINS=host.origin, **env):
        host.herald_url = proc.url
        yield proc


@pytest.fixture
def herald(tmp_path: Path, host: HostSite) -> Iterator[ServerProcess]:
    yield from start_herald(tmp_path, host)


@pytest.fixture
def one_slot_herald(tmp_path: Path, host: HostSite) -> Iterator[ServerProcess]:
    """One job at a time, stream tokens good for 2 s (a reconnect needs a fresh one)."""
    yield from start_herald(tmp_path, host, MAX_CONCURRENT_JOBS="1", STREAM_TOKEN_TTL_SECONDS="2")


@pytest.fixture
def one_connection_herald(tmp_path: Path, host: HostSite) -> Iterator[ServerProcess]:
    """One connection per user (a closed stream's slot frees within a 1 s heartbeat)."""
    yield from start_herald(tmp_path, host, MAX_CONNECTIONS_PER_USER="1", SSE_HEARTBEAT_SECONDS="1")


@pytest.fixture
def example_site() -> Iterator[ExampleSite]:
    site = ExampleSite().start()
    yield site
    site.stop()


@pytest.fixture
def example_herald(tmp_path: Path, example_site: ExampleSite) -> Iterator[ServerProcess]:
    for proc in launch(tmp_path, CORS_ALLOWED_ORIGINS=example_site.origin):
        example_site.app.config["HERALD_URL"] = proc.url
        yield proc


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("pageerror", lambda exc: print(f"page error: {exc}"))
    yield page
    context.close()


def page_durable(tab: Any) -> list[dict[str, Any]]:
    received = tab.evaluate("window.received")
    return [entry["message"] for entry in received if entry["message"]["seq"] is not None]


def test_an_eventsource_resumes_after_a_dropped_connection_with_every_event_once(tab, host, herald):
    alice = herald.login("alice")
    proxy = CuttableProxy(herald.port).start()
    try:
        job = herald.submit(alice, steps=80, interval=0.05, log_every=2)
        token = herald.api("POST", "/api/stream-tokens", alice, json={"job_id": job["id"]}).json()["token"]
        tab.goto(host.eventsource_page(f"{proxy.url}/api/jobs/{job['id']}/stream?token={token}"))
        wait_for(lambda: len(page_durable(tab)) >= 5, timeout=30)
        proxy.cut()  # the network drops; the browser reconnects with Last-Event-ID
        tab.wait_for_function("window.opens >= 2", timeout=LONG_MS)
        last_seq = herald.wait_ended(alice, job["id"])["last_seq"]
        history = herald.history(alice, job["id"])
        wait_for(lambda: len(page_durable(tab)) >= last_seq, timeout=60)
        assert page_durable(tab) == history
        ids = [entry["lastEventId"] for entry in tab.evaluate("window.received") if entry["message"]["seq"]]
        assert ids == [f"{job['id']}:{m['seq']}" for m in history]
        # The stream ended after the final status; the browser's reconnect got 204 and stopped.
        tab.wait_for_function("window.source.readyState === 2", timeout=LONG_MS)
        assert page_durable(tab) == history
    finally:
        proxy.stop()


def test_the_widget_on_another_origin_shows_a_job_to_completion(tab, host, herald):
    alice = herald.login("alice")
    job = herald.submit(alice, steps=30, interval=0.05, log_every=3)
    tab.goto(host.widget_page(job["id"]))
    widget = tab.locator("herald-progress")
    tab.wait_for_selector("herald-progress[state=completed]", timeout=LONG_MS)
    last_seq = herald.wait_ended(alice, job["id"])["last_seq"]
    assert widget.get_attribute("last-event-id") == f"{job['id']}:{last_seq}"
    assert widget.locator("[part=percent]").inner_text() == "100%"
    assert widget.locator("[part=status]").inner_text() == "completed"
    assert "simulate" in widget.locator("[part=label]").inner_text()
    logs = [m["data"]["message"] for m in herald.history(alice, job["id"]) if m["type"] == "job_log"]
    assert widget.locator("[part=log]").inner_text().splitlines() == logs[-5:]
    assert widget.locator("[part=error]").is_hidden() and widget.locator("[part=cancel]").is_hidden()
    screenshot(tab, "widget-completed")


def test_the_widget_resumes_after_herald_restarts(tab, host, one_slot_herald):
    # One job at a time: the watched job waits as pending behind a long one, so it survives
    # the restart (the running one ends interrupted) and runs to completion afterwards.
    herald = one_slot_herald
    alice = herald.login("alice")
    blocker = herald.submit(alice, steps=10_000, interval=0.05)
    job = herald.submit(alice, steps=20, interval=0.05, log_every=2)
    tab.goto(host.widget_page(job["id"]))
    widget = tab.locator("herald-progress")
    tab.wait_for_selector("herald-progress[state=pending]")
    assert widget.get_attribute("last-event-id") == f"{job['id']}:1"
    herald.kill()
    herald.start()
    tab.wait_for_selector("herald-progress[state=completed]", timeout=LONG_MS)
    alice = herald.login("alice")
    assert herald.wait_ended(alice, blocker["id"])["status"] == "failed"
    last_seq = herald.wait_ended(alice, job["id"])["last_seq"]
    assert widget.get_attribute("last-event-id") == f"{job['id']}:{last_seq}"
    logs = [m["data"]["message"] for m in herald.history(alice, job["id"]) if m["type"] == "job_log"]
    assert widget.locator("[part=log]").inner_text().splitlines() == logs[-5:]
    assert len(host.token_answers) >= 2, "the widget never asked for a fresh token"


def test_the_widget_refuses_another_users_job_visibly(tab, host, herald):
    alice = herald.login("alice")
    job = herald.submit(alice, steps=5, interval=0.05)
    tab.goto(host.widget_page(job["id"], user="bob"))
    tab.wait_for_selector("herald-progress[state=error]")
    error = tab.locator("herald-progress [part=error]")
    assert error.is_visible()
    assert "not_found" in error.inner_text() and str(job["id"]) in error.inner_text()
    assert tab.locator("herald-progress [part=status]").inner_text() == "error"
    screenshot(tab, "widget-refused")


def test_the_widget_cancels_with_a_cancel_token_when_allowed(tab, host, herald):
    alice = herald.login("alice")
    job = herald.submit(alice, steps=2000, interval=0.05)
    tab.goto(host.widget_page(job["id"], cancel=True))
    tab.wait_for_selector("herald-progress[state=running]")
    # Watching fetched no cancel token: the page's `cancelable` alone shows the button.
    assert [answer.get("can_cancel") for _, answer in host.token_answers] == [False] * len(host.token_answers)
    tab.locator("herald-progress [part=cancel]").click()
    tab.wait_for_selector("herald-progress[state=cancelled]", timeout=LONG_MS)
    assert herald.wait_ended(alice, job["id"])["status"] == "cancelled"
    assert tab.locator("herald-progress [part=cancel]").is_hidden()
    assert [body.get("cancel") is True for body in host.token_requests].count(True) == 1  # the click's
    assert [("cancel_token" in answer) for _, answer in host.token_answers].count(True) == 1


def test_a_page_that_merely_shows_a_job_gets_no_cancel_token_and_no_button(tab, host, herald):
    alice = herald.login("alice")
    job = herald.submit(alice, steps=2000, interval=0.05)
    tab.goto(host.widget_page(job["id"], may_cancel=True))  # the host would allow it; the page does not ask
    tab.wait_for_selector("herald-progress[state=running]")
    assert tab.locator("herald-progress [part=cancel]").is_hidden()
    assert tab.evaluate("document.querySelector('herald-progress').cancel()") is None
    assert host.token_requests and all("cancel" not in body for body in host.token_requests)
    assert host.token_answers and all("cancel_token" not in answer for _, answer in host.token_answers)
    herald.api("POST", f"/api/jobs/{job['id']}/cancel", alice)


def test_the_widget_backs_off_and_shows_an_error_while_herald_refuses_its_tokens(tab, host, herald):
    """A token endpoint answering tokens Herald refuses (another Herald's, a rotated secret):
    a few slow retries, an unmistakable error, and recovery once the host is fixed."""
    alice = herald.login("alice")
    job = herald.submit(alice, steps=10, interval=0.05)
    host.token_override = {"token": "not-a-real-token", "expires_at": 0, "scope": f"job:{job['id']}"}
    started = time.monotonic()
    tab.goto(host.widget_page(job["id"]))
    tab.wait_for_selector("herald-progress[state=error]", timeout=10_000)
    error = tab.locator("herald-progress [part=error]")
    assert error.is_visible() and "token_invalid" in error.inner_text() and "retrying" in error.inner_text()
    time.sleep(max(0.0, 5 - (time.monotonic() - started)))
    asked = len(host.token_requests)
    assert 2 <= asked <= 5, f"{asked} token requests in 5 s: no backoff"
    assert [(e["code"], e["retrying"]) for e in tab.evaluate("window.heraldErrors")] == [("token_invalid", True)]
    host.token_override = None  # the host fixes its credentials: the widget's next retry works
    tab.wait_for_selector("herald-progress[state=completed]", timeout=LONG_MS)
    assert error.is_hidden()
    screenshot(tab, "widget-recovered")


def test_the_widget_waits_busy_at_the_users_connection_cap_then_follows(tab, host, one_connection_herald):
    herald = one_connection_herald
    alice = herald.login("alice")
    scoped = herald.api("POST", "/api/stream-tokens", alice, json={"all": True}).json()["token"]
    holder = StreamReader(f"{herald.url}/api/stream?all=1&token={scoped}").start()  # alice's one connection
    assert holder.status == 200
    try:
        job = herald.submit(alice, steps=10, interval=0.05)
        tab.goto(host.widget_page(job["id"]))
        tab.wait_for_selector("herald-progress[state=busy]", timeout=10_000)
        widget = tab.locator("herald-progress")
        assert widget.locator("[part=status]").inner_text() == "busy, retrying"
        assert widget.locator("[part=error]").is_hidden()
        assert "retrying" in widget.locator("[part=message]").inner_text()
        screenshot(tab, "widget-busy")
    finally:
        holder.close()
    tab.wait_for_selector("herald-progress[state=completed]", timeout=LONG_MS)
    assert tab.evaluate("window.heraldErrors") == []


def test_the_plain_html_example_runs_as_written(tab, host, herald):
    """``examples/widget/plain.html`` with only its Herald URL, job and endpoint filled in."""
    alice = herald.login("alice")
    job = herald.submit(alice, steps=10, interval=0.05, log_every=2)
    tab.goto(f"{host.origin}/plain-example.html?job={job['id']}")
    tab.wait_for_selector("herald-progress[state=completed]", timeout=LONG_MS)
    widget = tab.locator("herald-progress")
    assert widget.locator("[part=label]").inner_text() == "Nightly export"
    assert tab.title() == "Export ready"  # its herald-end listener ran
    fill = widget.locator("[part=fill]").evaluate("element => getComputedStyle(element).backgroundColor")
    assert fill == "rgb(26, 127, 55)"  # completed: --herald-success
    bar = widget.locator("[part=bar]").evaluate("element => getComputedStyle(element).borderRadius")
    assert bar == "2px"  # the example's --herald-radius reached the shadow DOM


def test_the_example_token_endpoint_serves_the_widget_and_a_cancel_only_when_allowed(tab, example_site, example_herald):
    """``examples/widget/token_endpoint.py`` as written behind the widget: watching gets no
    cancel token and no button; a ``cancelable`` page's click gets one and cancels."""
    herald = example_herald
    alice = herald.login("alice")
    job = herald.submit(alice, steps=2000, interval=0.05)
    tab.goto(example_site.page(job["id"]))
    tab.wait_for_selector("herald-progress[state=running]")
    assert tab.locator("herald-progress [part=cancel]").is_hidden()
    tab.goto(example_site.page(job["id"], cancel=True))
    tab.wait_for_selector("herald-progress[state=running]")
    tab.locator("herald-progress [part=cancel]").click()
    tab.wait_for_selector("herald-progress[state=cancelled]", timeout=LONG_MS)
    assert herald.wait_ended(alice, job["id"])["status"] == "cancelled"
    cancel_tokens = [asked for asked, status, answer in example_site.exchanges if "cancel_token" in answer]
    assert cancel_tokens == [{"job_id": job["id"], "cancel": True}]
    assert all(status == 200 for _, status, _ in example_site.exchanges)
