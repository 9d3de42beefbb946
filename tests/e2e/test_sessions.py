"""Sessions in a real browser: one sign-in per browser, tokens in memory only, sign-out
everywhere; the job-end notification a user opts in to."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import ServerProcess

from .conftest import TIMEOUT_MS, sign_in

#: The tab's access token: in herald.js's memory (the same module instance the page runs),
#: once the tab's session is settled (null when it has none).
TAB_TOKEN = "import('/static/js/herald.js').then(async (herald) => (await herald.ensureSession(), herald.getToken()))"

#: Records every notification the page shows, keeping the browser's real permission.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  class Recorded {
    constructor(title, options = {}) { window.__notifications.push({ title, body: options.body, tag: options.tag }); }
    close() {}
    static get permission() { return Real.permission; }
    static requestPermission(...args) { window.__asked = true; return Real.requestPermission(...args); }
  }
  window.Notification = Recorded;
})();
"""


@pytest.fixture
def notifying_context(browser: Any, server: ServerProcess) -> Iterator[Any]:
    """A browser context that has granted notifications and records each one shown."""
    ctx = browser.new_context(
        base_url=server.url, viewport={"width": 1000, "height": 900}, permissions=["notifications"]
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.add_init_script(RECORD_NOTIFICATIONS)
    yield ctx
    ctx.close()


def test_a_second_tab_is_not_asked_to_sign_in_and_sign_out_refuses_it(
    context: Any, page: Any, server: ServerProcess
) -> None:
    token = server.login("alice")
    job = server.submit(token, steps=600, interval=0.1)
    sign_in(page, "/")
    link = page.locator(f'a[href="/jobs/{job["id"]}"]').first
    with context.expect_page() as opened:
        link.click(modifiers=["Control"])
    tab = opened.value
    tab.wait_for_load_state()
    assert re.search(rf"/jobs/{job['id']}$", tab.url), tab.url
    tab.locator("#connection-state").filter(has_text="connected").wait_for()
    tab_token = tab.evaluate(TAB_TOKEN)
    assert tab_token and tab_token != page.evaluate(TAB_TOKEN)  # each tab its own token
    assert server.api("GET", "/api/auth/me", tab_token).status_code == 200
    # Nothing a script can read holds a credential.
    for where in ("JSON.stringify(sessionStorage)", "JSON.stringify(localStorage)", "document.cookie"):
        assert "eyJ" not in tab.evaluate(where) and "herald_refresh" not in tab.evaluate(where), where

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))
    refused = server.api("GET", "/api/auth/me", tab_token)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
    # The other tab's socket is closed; its reconnect is refused and it lands on /login.
    tab.wait_for_url(re.compile(r"/login\?next=%2Fjobs%2F" + str(job["id"]) + "$"))
    tab.goto(f"/jobs/{job['id']}")  # and a fresh load is not let in either
    tab.wait_for_url(re.compile(r"/login\?next="))


def test_a_user_who_opted_in_is_notified_when_a_watched_job_ends_with_its_outcome(
    notifying_context: Any, server: ServerProcess
) -> None:
    page = notifying_context.new_page()
    token = server.login("alice")
    job = server.submit(token, steps=40, interval=0.1, fail_at=30)
    sign_in(page, f"/jobs/{job['id']}")
    page.locator("#connection-state").filter(has_text="connected").wait_for()
    toggle = page.get_by_role("button", name="Notify me when jobs end")
    toggle.click()
    page.get_by_role("button", name="Notifications on").wait_for()
    assert page.evaluate("window.__asked === true") is False  # already granted: not asked again
    page.wait_for_function("window.__notifications.length > 0")
    shown = page.evaluate("window.__notifications")
    assert len(shown) == 1, shown
    assert f"job #{job['id']} failed" in shown[0]["title"]
    assert "simulate" in shown[0]["title"] and "failed" in shown[0]["body"]
    assert shown[0]["tag"] == f"herald-job-{job['id']}"


def test_permission_is_asked_only_on_the_users_click(browser: Any, server: ServerProcess) -> None:
    ctx = browser.new_context(base_url=server.url)
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.add_init_script(RECORD_NOTIFICATIONS)
    try:
        page = ctx.new_page()
        sign_in(page, "/")
        page.locator("#connection-state").filter(has_text="connected").wait_for()
        assert page.evaluate("window.__asked === true") is False
        page.get_by_role("button", name="Notify me when jobs end").click()
        page.wait_for_function("window.__asked === true")
    finally:
        ctx.close()
