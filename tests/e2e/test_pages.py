"""The pages in a real browser: login redirect, live dashboard, job page across a server
restart and an offline spell, the upload page, /websocket-test, small screens and keyboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.conftest import ServerProcess
from tests.integration.plain_ws import KindsServer, start_server

from .conftest import TIMEOUT_MS, screenshot, sign_in

LONG_MS = 90_000


def api_log_lines(server: ServerProcess, token: str, job_id: int) -> list[str]:
    """The job's durable ``job_log`` messages, in seq order, as the server stored them."""
    response = server.api("GET", f"/api/jobs/{job_id}/events?after=0", token)
    response.raise_for_status()
    return [e["data"]["message"] for e in response.json()["events"] if e["type"] == "job_log"]


def page_log_lines(page: Any) -> list[str]:
    """Every line the job page's log holds (it draws only the rows in view)."""
    return list(page.evaluate("window.heraldLog ? window.heraldLog.lines.map(l => l.text) : []"))


def page_log_seqs(page: Any) -> list[int]:
    return [int(s) for s in page.evaluate("window.heraldLog ? window.heraldLog.lines.map(l => l.seq) : []")]


#: The tab's access token: in herald.js's memory (the same module instance the page runs),
#: once the tab's session is settled (null when it has none).
TAB_TOKEN = "import('/static/js/herald.js').then(async (herald) => (await herald.ensureSession(), herald.getToken()))"


def test_page_without_token_goes_to_login_and_back(page: Any) -> None:
    page.goto("/jobs/7")
    page.wait_for_url(re.compile(r"/login\?next=%2Fjobs%2F7$"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("password123")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/jobs/7$"))
    assert "token" not in page.url
    assert page.evaluate(TAB_TOKEN)


def test_sign_out_revokes_the_token_and_returns_to_login(page: Any, server: ServerProcess) -> None:
    sign_in(page, "/")
    token = page.evaluate(TAB_TOKEN)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))
    assert page.evaluate(TAB_TOKEN) is None
    assert server.api("GET", "/api/auth/me", token).status_code == 401


def test_wrong_password_shows_an_error_and_stays_on_login(page: Any) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="wrong username or password").wait_for()
    assert page.evaluate(TAB_TOKEN) is None


def test_new_job_form_runs_a_job_to_completed_live(page: Any) -> None:
    sign_in(page, "/")
    page.locator("#connection-state").filter(has_text="connected").wait_for()
    page.evaluate("window.__sameDocument = true")
    page.get_by_label("Kind", exact=True).select_option("simulate")
    page.get_by_label("Steps", exact=True).fill("25")
    page.get_by_label("Seconds per step").fill("0.2")
    page.get_by_role("button", name="Start job").click()

    row = page.locator("tr.job").first
    job_id = int(row.get_attribute("data-job-id"))
    bar = page.get_by_role("progressbar", name=f"Job {job_id} progress")
    # The bar moves: seen strictly between 0 and 100 before it ends.
    page.wait_for_function(
        f"() => {{ const b = document.querySelector('tr.job[data-job-id=\"{job_id}\"] progress');"
        " return b && b.value > 0 && b.value < 100; }",
        timeout=LONG_MS,
    )
    row.locator(".badge").filter(has_text="completed").wait_for(timeout=LONG_MS)
    assert bar.get_attribute("aria-valuenow") == "100"
    assert row.locator(".percent").inner_text() == "100%"
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    shot = screenshot(page, "dashboard-job-completed")
    assert shot.stat().st_size > 0


def test_job_page_recovers_after_server_restart_with_every_log_line_once(page: Any, server: ServerProcess) -> None:
    token = server.login("alice")
    job = server.submit(token, steps=400, interval=0.1, log_every=2)
    sign_in(page, f"/jobs/{job['id']}")
    page.locator(".badge").filter(has_text="running").wait_for()
    wait_for(lambda: len(page_log_lines(page)) >= 4, timeout=30)

    server.kill()
    page.locator("#connection-state").filter(has_text=re.compile(r"reconnecting in \d+ s")).wait_for()
    server.start()

    page.locator(".badge").filter(has_text="failed").wait_for(timeout=LONG_MS)
    page.locator("#connection-state").filter(has_text="connected").wait_for(timeout=LONG_MS)
    assert page.locator("#error-code").inner_text() == "interrupted"
    screenshot(page, "job-page-after-restart")
    expected = api_log_lines(server, token, job["id"])
    wait_for(lambda: page_log_lines(page) == expected, timeout=10)
    seqs = page_log_seqs(page)
    assert len(seqs) == len(set(seqs)) == len(expected)


def test_job_page_offline_spell_misses_no_log_line_and_doubles_none(
    page: Any, context: Any, server: ServerProcess
) -> None:
    token = server.login("alice")
    job = server.submit(token, steps=80, interval=0.1, log_every=1)
    sign_in(page, f"/jobs/{job['id']}")
    wait_for(lambda: len(page_log_lines(page)) >= 3, timeout=30)

    context.set_offline(True)
    page.locator("#connection-state").filter(has_text="offline").wait_for()
    seen_before = len(page_log_lines(page))
    # The job keeps logging while the page is away.
    wait_for(lambda: len(api_log_lines(server, token, job["id"])) >= seen_before + 5, timeout=30)
    assert len(page_log_lines(page)) == seen_before
    context.set_offline(False)

    page.locator(".badge").filter(has_text="completed").wait_for(timeout=LONG_MS)
    expected = api_log_lines(server, token, job["id"])
    assert len(expected) > seen_before + 5
    wait_for(lambda: page_log_lines(page) == expected, timeout=10)
    seqs = page_log_seqs(page)
    assert len(seqs) == len(set(seqs))


def test_job_page_of_another_users_job_says_not_found(page: Any, server: ServerProcess) -> None:
    job = server.submit(server.login("bob"), steps=1, interval=0)
    sign_in(page, f"/jobs/{job['id']}")
    page.get_by_role("alert").filter(has_text=f"Job {job['id']} not found.").wait_for()
    assert page.locator("#job-body").is_hidden() and page.locator(".log-line").count() == 0


def test_job_page_cancel_is_enabled_only_while_active(page: Any, server: ServerProcess) -> None:
    token = server.login("alice")
    job = server.submit(token, steps=500, interval=0.1)
    sign_in(page, f"/jobs/{job['id']}")
    cancel = page.get_by_role("button", name="Cancel job…")
    page.locator(".badge").filter(has_text="running").wait_for()
    assert cancel.is_enabled()
    cancel.click()  # asks first
    page.get_by_role("button", name="Keep running").click()
    assert page.locator(".badge").first.inner_text() == "running"
    cancel.click()
    page.get_by_role("button", name="Yes, cancel job").click()
    page.locator(".badge").filter(has_text="cancelled").wait_for(timeout=LONG_MS)
    assert cancel.is_disabled()


def test_job_page_rerun_starts_a_job_with_the_same_params(page: Any, server: ServerProcess) -> None:
    token = server.login("alice")
    job = server.submit(token, steps=3, interval=0.01)
    sign_in(page, f"/jobs/{job['id']}")
    page.locator(".badge").filter(has_text="completed").wait_for()
    page.get_by_role("button", name="Re-run").click()
    page.wait_for_url(lambda url: not url.endswith(f"/jobs/{job['id']}"))
    new_id = int(page.url.rsplit("/", 1)[1])
    assert new_id != job["id"]
    rerun = server.api("GET", f"/api/jobs/{new_id}", token).json()["job"]
    assert rerun["params"] == server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]["params"]


def test_dashboard_shows_a_job_started_elsewhere_without_reload(page: Any, server: ServerProcess) -> None:
    sign_in(page, "/")
    page.locator("#connection-state").filter(has_text="connected").wait_for()
    page.locator("#jobs-empty").wait_for()
    token = server.login("alice")
    job = server.submit(token, steps=5, interval=0.05)
    row = page.locator(f'tr.job[data-job-id="{job["id"]}"]')
    row.locator(".badge").filter(has_text="completed").wait_for(timeout=LONG_MS)


def test_dashboard_filters_by_status(page: Any, server: ServerProcess) -> None:
    token = server.login("alice")
    done = server.submit(token, steps=1, interval=0)
    failed = server.submit(token, steps=3, interval=0, fail_at=2)
    wait_for(lambda: server.api("GET", f"/api/jobs/{failed['id']}", token).json()["job"]["status"] == "failed")
    wait_for(lambda: server.api("GET", f"/api/jobs/{done['id']}", token).json()["job"]["status"] == "completed")
    sign_in(page, "/")
    page.locator("tr.job").nth(1).wait_for()
    page.get_by_label("Filter by status").select_option("failed")
    wait_for(lambda: page.locator("tr.job").count() == 1, timeout=10)
    assert page.locator("tr.job").first.get_attribute("data-job-id") == str(failed["id"])


def test_dashboard_is_keyboard_usable_and_fits_360px(browser: Any, server: ServerProcess) -> None:
    context = browser.new_context(base_url=server.url, viewport={"width": 360, "height": 780})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto("/")
        page.wait_for_url(re.compile(r"/login"))
        page.get_by_label("Username").focus()
        page.keyboard.type("alice")
        page.keyboard.press("Tab")
        page.keyboard.type("password123")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/$"))
        kind = page.get_by_label("Kind", exact=True)
        kind.locator("option[value=simulate]").wait_for(state="attached")
        kind.select_option("simulate")
        page.get_by_label("Steps", exact=True).wait_for()
        kind.focus()
        for _ in range(30):  # Tab through the form until the submit button has focus
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "Start job":
                break
        page.keyboard.press("Enter")
        page.locator("tr.job .badge").filter(has_text="completed").wait_for(timeout=LONG_MS)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        screenshot(page, "dashboard-360px")
    finally:
        context.close()


def test_websocket_test_page_ping_echo_and_subscribe(page: Any, server: ServerProcess) -> None:
    sign_in(page, "/")
    page.get_by_role("link", name="WebSocket test").click()
    page.wait_for_url(re.compile(r"/websocket-test$"))
    page.locator("#connection-state").filter(has_text="connected").wait_for()

    page.get_by_role("button", name="Ping").click()
    page.locator("#rtt").filter(has_text=re.compile(r"^\d+ ms$")).wait_for()

    page.get_by_label("Message", exact=True).fill("hello from the browser")
    page.get_by_role("button", name="Echo").click()
    page.locator("#echo-result").filter(has_text="hello from the browser").wait_for()

    token = server.login("alice")
    job = server.submit(token, steps=30, interval=0.1, log_every=5)
    page.get_by_label("Job id").fill(str(job["id"]))
    page.get_by_role("button", name="Subscribe").click()
    log = page.get_by_role("log")
    log.filter(has_text="job_progress").wait_for()
    log.filter(has_text="reached step 5").wait_for()
    page.locator("#job-status").filter(has_text="completed").wait_for(timeout=LONG_MS)
    screenshot(page, "websocket-test")


def test_upload_page_shows_browser_and_server_progress(page: Any, server: ServerProcess, tmp_path: Path) -> None:
    data = tmp_path / "sales.csv"
    rows = "".join(f"{['north', 'south', 'east'][i % 3]},{i % 97},{i}\n" for i in range(400_000))
    data.write_text("region,amount,n\n" + rows)
    sign_in(page, "/upload")
    page.locator("#connection-state").filter(has_text="connected").wait_for()
    page.evaluate(
        """() => { window.__seen = {browser: [], server: []};
        for (const [key, id] of [["browser", "browser-progress"], ["server", "server-progress"]]) {
          const bar = document.getElementById(id);
          new MutationObserver(() => window.__seen[key].push(Number(bar.value)))
            .observe(bar, {attributes: true}); } }"""
    )
    page.get_by_label("File", exact=True).set_input_files(str(data))
    page.get_by_role("button", name="Upload").click()
    page.locator("#upload-sha").filter(has_text=re.compile(r"^[0-9a-f]{64}$")).wait_for(timeout=LONG_MS)
    assert page.locator("#browser-percent").inner_text() == "100%"
    assert page.locator("#server-percent").inner_text() == "100%"
    assert page.locator("#server-detail").inner_text()  # set only by file_upload_progress messages
    seen = page.evaluate("window.__seen")
    assert seen["browser"] and seen["server"]
    screenshot(page, "upload")


def test_upload_page_imports_then_reports_in_two_clicks(page: Any, server: ServerProcess, tmp_path: Path) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\nnorth,3\nsouth,5\nnorth,4\n")
    sign_in(page, "/upload")
    page.get_by_label("File", exact=True).set_input_files(str(data))
    page.get_by_role("button", name="Upload").click()
    page.get_by_role("button", name="Start import").click()
    page.locator("#import-job .badge").filter(has_text="completed").wait_for(timeout=LONG_MS)
    page.get_by_label("region", exact=True).check()
    page.get_by_role("button", name="Start report").click()
    page.locator("#report-job .badge").filter(has_text="completed").wait_for(timeout=LONG_MS)

    page.locator("#report-job a").first.click()
    artifacts = page.locator("#artifacts a")
    artifacts.filter(has_text="summary.html").wait_for()
    with page.expect_download() as download:
        artifacts.filter(has_text="summary.csv").click()
    assert Path(download.value.path()).read_text().startswith("region")
    screenshot(page, "report-job")


def test_reconnect_backoff_doubles_from_1s_to_a_32s_cap_with_jitter(page: Any) -> None:
    page.goto("/login")
    delays = page.evaluate(
        """async () => { const { backoffDelay } = await import('/static/js/herald.js');
        return Array.from({length: 8}, (_, attempt) =>
          Array.from({length: 200}, () => backoffDelay(attempt))); }"""
    )
    for attempt, samples in enumerate(delays):
        base = min(32_000, 1000 * 2**attempt)
        assert all(0.7 * base <= d <= 1.3 * base for d in samples)
        assert len(set(samples)) > 1  # jitter: reconnecting clients do not stampede together


@pytest.mark.parametrize("target", ["//evil.example/x", r"/\evil.example/x", "https://evil.example/", "javascript:x"])
def test_sign_in_never_follows_next_off_site(page: Any, target: str) -> None:
    page.goto("/login")
    assert page.evaluate("async (t) => (await import('/static/js/herald.js')).safeNext(t)", target) == "/"


def test_sign_in_follows_next_on_this_site(page: Any) -> None:
    page.goto("/login")
    assert page.evaluate("async () => (await import('/static/js/herald.js')).safeNext('/jobs/7?tab=log')") == (
        "/jobs/7?tab=log"
    )


def test_job_view_keeps_the_higher_seq_when_snapshot_and_live_event_disagree(page: Any) -> None:
    page.goto("/login")
    statuses = page.evaluate(
        """async () => {
        const { JobModel } = await import('/static/js/jobview.js');
        const model = new JobModel({id: 1, status: 'running', last_seq: 5});
        const seen = [];
        model.applyMessage({type: 'job_status', seq: 6, timestamp: '2026-01-01T00:00:00Z',
                            data: {status: 'completed'}});
        seen.push(model.job.status);
        model.applySnapshot({id: 1, status: 'running', last_seq: 5});  // older snapshot loses
        seen.push(model.job.status);
        model.applyMessage({type: 'job_status', seq: 4, timestamp: '2026-01-01T00:00:00Z',
                            data: {status: 'pending'}});  // older event loses
        seen.push(model.job.status);
        model.applySnapshot({id: 1, status: 'failed', last_seq: 7});  // newer snapshot wins
        seen.push(model.job.status);
        return seen; }"""
    )
    assert statuses == ["completed", "completed", "completed", "failed"]


def test_batch_counts_on_the_dashboard_and_cases_on_the_job_page(page: Any, server: ServerProcess) -> None:
    token = server.login("alice")
    case_ids = []
    for number in range(6):
        expected_status = 500 if number % 3 == 0 else 200  # /health answers 200: every third case fails
        case = {
            "name": f"case {number}",
            "config": {"base_url": server.url},
            "steps": [
                {
                    "name": "health",
                    "request": {"method": "GET", "url": "/health"},
                    "validate": [{"status_code": expected_status}],
                }
            ],
        }
        response = server.api("POST", "/api/test-cases", token, json=case)
        assert response.status_code == 201, response.text
        case_ids.append(response.json()["test_case"]["id"])
    sign_in(page, "/")
    page.locator("#connection-state").filter(has_text="connected").wait_for()
    batch = server.submit(token, "batch_execution", test_case_ids=case_ids, concurrency=2)

    row = page.locator(f'tr.job[data-job-id="{batch["id"]}"]')
    row.locator(".badge").filter(has_text="completed with failures").wait_for(timeout=LONG_MS)
    row.locator(".counts").filter(has_text="2 of 6 cases failed · 4 passed").wait_for()
    assert row.locator(".badge").inner_text() == "completed with failures"

    row.get_by_role("link", name=re.compile(f"#{batch['id']}")).click()
    page.wait_for_url(re.compile(rf"/jobs/{batch['id']}$"))
    cases = page.locator("#steps tbody tr")
    wait_for(lambda: cases.count() == 6, timeout=30)
    statuses = cases.locator("td:nth-child(3)").all_inner_texts()
    assert sorted(statuses) == ["failed"] * 2 + ["passed"] * 4
    screenshot(page, "batch-job-page")


@pytest.fixture
def kinds_server(tmp_path: Path) -> Iterator[KindsServer]:
    """A server that also knows the test-only kinds (here: one that loses an event in transit)."""
    yield from start_server(tmp_path)


def test_job_page_fetches_a_log_line_that_never_arrived_live(browser: Any, kinds_server: KindsServer) -> None:
    token = kinds_server.login("alice")
    gate = kinds_server.workdir / "go"
    job = kinds_server.submit(token, "test_lost_emit", lines=12, lose=7, interval=0.05, gate=str(gate))
    context = browser.new_context(base_url=kinds_server.url, viewport={"width": 1000, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        sign_in(page, f"/jobs/{job['id']}")
        page.locator(".badge").filter(has_text="running").wait_for()
        gate.touch()  # the page is live: now the lines go out, the seventh never sent
        page.locator(".badge").filter(has_text="completed").wait_for(timeout=LONG_MS)
        expected = api_log_lines(kinds_server, token, job["id"])
        assert "line 7 (never sent live)" in expected
        wait_for(lambda: page_log_lines(page) == expected, timeout=10)
        seqs = page_log_seqs(page)
        assert len(seqs) == len(set(seqs)) == len(expected)
    finally:
        context.close()
