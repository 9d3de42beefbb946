"""A newcomer's journeys through the pages alone: every kind started from a page, failures
unmistakable, runs you can read (issue 13). One server, one target service and one
signed-in tab for the module; REST is used only to read back what the pages did.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.conftest import ServerProcess, launch
from tests.target_service import TargetService

from .conftest import TIMEOUT_MS, screenshot, sign_in, sync_api

expect = sync_api.expect

LONG_MS = 90_000
#: Widths the screenshots are taken at: a laptop and a phone.
WIDTHS = {"1280": {"width": 1280, "height": 900}, "390": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for the module (users alice and bob)."""
    yield from launch(tmp_path_factory.mktemp("journeys"))


@pytest.fixture(scope="module")
def target() -> Iterator[TargetService]:
    """The HTTP service the test cases call."""
    service = TargetService().start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def tab(browser: Any, site: ServerProcess) -> Iterator[Any]:
    """One signed-in tab, shared by the module's tests (each starts with ``goto``)."""
    context = browser.new_context(base_url=site.url, viewport=WIDTHS["1280"], accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("pageerror", lambda exc: print(f"page error: {exc}"))
    sign_in(page, "/")
    yield page
    context.close()


@pytest.fixture(scope="module")
def token(site: ServerProcess) -> str:
    """Alice's token, for reading back only."""
    return site.login("alice")


def read_job(site: ServerProcess, token: str, job_id: int) -> dict[str, Any]:
    return dict(site.api("GET", f"/api/jobs/{job_id}", token).json()["job"])


def shots(page: Any, name: str) -> None:
    """Full-page screenshots at 1280 and 390 px wide; the viewport is put back after."""
    for width, size in WIDTHS.items():
        page.set_viewport_size(size)
        page.evaluate("() => new Promise(requestAnimationFrame)")
        screenshot(page, f"{name}-{width}")
    page.set_viewport_size(WIDTHS["1280"])


#: The bar's colour while a job runs (``accent-color`` of a running bar).
RUNNING_BLUE = "rgb(47, 111, 222)"


def bar_colour(page: Any, selector: str = "#summary progress") -> str:
    """The colour a bar is drawn in."""
    return str(page.eval_on_selector(selector, "p => getComputedStyle(p).accentColor"))


def new_job_form(page: Any, kind: str) -> None:
    """Open the dashboard's New-job form on ``kind``."""
    page.goto("/")
    page.locator("#connection-state").filter(has_text="connected").wait_for()
    page.get_by_label("Kind", exact=True).select_option(kind)
    if kind == "workflow":
        page.locator("#workflow-starter").wait_for()
    else:
        page.locator(f'#params[data-kind="{kind}"]').wait_for(state="attached")


def started_job_id(page: Any) -> int:
    """The id of the job the New-job form just started (it also heads the table)."""
    page.wait_for_function("() => document.getElementById('new-job').dataset.lastJob")
    return int(page.eval_on_selector("#new-job", "f => f.dataset.lastJob"))


def start_simulate(page: Any, steps: int, seconds: float, more: dict[str, int] | None = None) -> int:
    """Start a ``simulate`` job from the New-job form, ``more`` fields by their label;
    returns the new job's id."""
    new_job_form(page, "simulate")
    page.get_by_label("Steps", exact=True).fill(str(steps))
    page.get_by_label("Seconds per step").fill(str(seconds))
    for label, value in (more or {}).items():
        page.get_by_label(label).fill(str(value))
    page.get_by_role("button", name="Start job").click()
    return started_job_id(page)


def case_yaml(target: TargetService, name: str, expected_status: int) -> str:
    """A one-step case against the target's ``/items`` (200): it passes when it expects 200."""
    return (
        f"name: {name}\nconfig:\n  base_url: {target.url}\nsteps:\n  - name: items\n"
        f"    request:\n      url: /items\n    validate:\n      - status_code: {expected_status}\n"
    )


def write_case(page: Any, yaml_text: str) -> int:
    """Write a test case in the editor and save it; returns its id."""
    page.goto("/test-cases/new")
    page.get_by_label("Test case (YAML)").fill(yaml_text)
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#saved").filter(has_text="Saved").wait_for()
    return int(re.search(r"/test-cases/(\d+)$", page.url).group(1))  # type: ignore[union-attr]


# -- 1. every kind from the pages -------------------------------------------------------


def test_a_test_case_written_in_the_editor_names_its_bad_line_then_saves_and_runs(
    tab: Any, site: ServerProcess, token: str, target: TargetService
) -> None:
    page = tab
    page.goto("/test-cases/new")
    editor = page.get_by_label("Test case (YAML)")
    editor.fill(case_yaml(target, "typo", 200).replace("request:", "reqest:"))
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.get_by_role("alert").filter(has_text="Line 6:")
    error.wait_for()
    assert "reqest" in error.inner_text()
    assert page.locator("#gutter mark").inner_text() == "6"
    shots(page, "test-case-editor-error")

    editor.fill(case_yaml(target, "items answer", 200))
    page.get_by_role("button", name="Save and run").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    page.locator("#summary .badge").filter(has_text=re.compile(r"^completed$")).wait_for(timeout=LONG_MS)
    job = read_job(site, token, job_id)
    assert (job["kind"], job["outcome"]) == ("api_test", "succeeded")
    assert page.locator("#steps tbody tr").first.locator("td").nth(2).inner_text() == "passed"


def test_a_failing_api_test_started_from_the_form_reads_completed_with_failures(
    tab: Any, site: ServerProcess, token: str, target: TargetService
) -> None:
    page = tab
    case_id = write_case(page, case_yaml(target, "expects a 500", 500))
    new_job_form(page, "api_test")
    page.get_by_label("Test case", exact=True).select_option(str(case_id))
    page.get_by_role("button", name="Start job").click()
    job_id = started_job_id(page)
    row = page.locator(f'tr.job[data-job-id="{job_id}"]')
    row.locator(".badge").filter(has_text="completed with failures").wait_for(timeout=LONG_MS)
    assert row.locator("progress").get_attribute("data-state") == "failures"

    page.goto(f"/jobs/{job_id}")
    badge = page.locator("#summary .badge")
    badge.filter(has_text="completed with failures").wait_for()
    assert page.locator("#summary progress").get_attribute("data-state") == "failures"
    assert bar_colour(page) not in (RUNNING_BLUE, "rgb(31, 138, 71)")  # neither running nor success
    assert read_job(site, token, job_id)["outcome"] == "failures"


def test_a_batch_of_a_b_a_b_a_b_from_the_form_shows_six_rows_numbered_1_to_6_and_its_failures(
    tab: Any, site: ServerProcess, token: str, target: TargetService
) -> None:
    page = tab
    good = write_case(page, case_yaml(target, "good", 200))
    bad = write_case(page, case_yaml(target, "bad", 500))
    new_job_form(page, "batch_execution")
    picker = page.get_by_label("Test cases", exact=True)
    for case_id in [good, bad] * 3:
        picker.select_option(str(case_id))
        page.get_by_role("button", name="Add case").click()
    assert page.locator("#param-test_case_ids-list li").count() == 6
    page.get_by_role("button", name="Start job").click()
    job_id = started_job_id(page)
    row = page.locator(f'tr.job[data-job-id="{job_id}"]')
    row.locator(".badge").filter(has_text="completed with failures").wait_for(timeout=LONG_MS)
    assert "3 of 6 cases failed" in row.locator(".counts").inner_text()
    # Children are folded under their batch: none of its six api_test jobs is a top row.
    children = {j["id"] for j in site.api("GET", f"/api/jobs?parent_id={job_id}", token).json()["jobs"]}
    assert len(children) == 6
    top = set(page.eval_on_selector_all("tr.job:not(.child)", "rows => rows.map(r => Number(r.dataset.jobId))"))
    assert not children & top
    row.locator("button.fold").click()
    child_rows = "tr.job.child"
    wait_for(lambda: page.locator(child_rows).count() == 6, timeout=10)
    shown = set(page.eval_on_selector_all(child_rows, "rows => rows.map(r => Number(r.dataset.jobId))"))
    assert shown == children
    shots(page, "dashboard")

    page.goto(f"/jobs/{job_id}")
    page.locator("#summary .badge").filter(has_text="completed with failures").wait_for()
    cases = page.locator("#steps tbody tr")
    wait_for(lambda: cases.count() == 6, timeout=10)
    assert cases.locator("td:nth-child(1)").all_inner_texts() == ["1", "2", "3", "4", "5", "6"]
    statuses = cases.locator("td:nth-child(3)").all_inner_texts()
    assert statuses == ["passed", "failed"] * 3
    job = read_job(site, token, job_id)
    assert job["params"]["test_case_ids"] == [good, bad] * 3 and job["outcome"] == "failures"


def test_a_selection_on_the_test_case_list_runs_as_a_batch(tab: Any, site: ServerProcess, token: str) -> None:
    page = tab
    page.goto("/test-cases")
    boxes = page.locator("#cases tbody input[type=checkbox]")
    boxes.nth(1).wait_for()
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.get_by_role("button", name="Run selected as a batch").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job = read_job(site, token, int(page.url.rsplit("/", 1)[1]))
    assert job["kind"] == "batch_execution" and len(job["params"]["test_case_ids"]) == 2


def test_a_failed_simulate_is_red_and_its_error_shows_once(tab: Any, site: ServerProcess, token: str) -> None:
    page = tab
    job_id = start_simulate(page, 4, 0.05, {"Fail at step": 3})
    page.goto(f"/jobs/{job_id}")
    page.locator("#summary .badge").filter(has_text="failed").wait_for(timeout=LONG_MS)
    # The rest of the page follows the same update: wait for it rather than race it.
    expect(page.locator("#summary progress")).to_have_attribute("data-state", "failed")
    assert bar_colour(page) == "rgb(198, 40, 40)"
    expect(page.get_by_text("simulated failure at step 3")).to_have_count(1)  # once, in the Error card
    expect(page.locator("#rerun")).to_be_enabled()
    expect(page.locator("#cancel")).to_be_disabled()
    shots(page, "job-failed")
    assert read_job(site, token, job_id)["outcome"] == "failed"


def test_a_workflow_created_and_started_from_the_form_runs_its_steps(tab: Any, site: ServerProcess, token: str) -> None:
    page = tab
    new_job_form(page, "workflow")
    page.locator("#workflow-new").evaluate("d => d.open = true")
    page.get_by_label("Workflow name").fill("two demos")
    steps = page.locator(".workflow-step")
    steps.first.get_by_label("Steps", exact=True).fill("2")
    steps.first.get_by_label("Seconds per step").fill("0.01")
    page.get_by_role("button", name="Add step").click()
    steps.nth(1).get_by_label("Steps", exact=True).fill("3")
    steps.nth(1).get_by_label("Seconds per step").fill("0.01")
    page.get_by_role("button", name="Save workflow").click()
    page.get_by_label("Saved workflow").locator("option", has_text="two demos").wait_for(state="attached")
    page.get_by_role("button", name="Start workflow").click()
    job_id = started_job_id(page)
    row = page.locator(f'tr.job[data-job-id="{job_id}"]')
    row.locator(".badge").filter(has_text=re.compile(r"^completed$")).wait_for(timeout=LONG_MS)
    job = read_job(site, token, job_id)
    assert job["kind"] == "workflow" and [s["params"]["steps"] for s in job["params"]["steps"]] == [2, 3]
    page.goto(f"/jobs/{job_id}")
    page.locator("#steps tbody tr").nth(1).wait_for()
    assert page.locator("#steps tbody td:nth-child(3)").all_inner_texts() == ["completed", "completed"]
    page.get_by_role("button", name="Re-run").click()  # a workflow runs again from its saved steps
    page.wait_for_url(lambda url: not url.endswith(f"/jobs/{job_id}"))
    again = read_job(site, token, int(page.url.rsplit("/", 1)[1]))
    assert again["kind"] == "workflow" and again["params"]["workflow_id"] == job["params"]["workflow_id"]


def test_upload_import_report_and_the_three_downloads_all_from_the_upload_page(
    tab: Any, site: ServerProcess, token: str, tmp_path: Path
) -> None:
    page = tab
    data = tmp_path / "sales.csv"
    lines = [f"{i},{['north', 'south', 'east'][i % 3]},{i % 7}" for i in range(1, 1201)]
    lines[9] = "10,north,lots"  # line 11 of the file: amount is not a number
    data.write_text("order_id,region,amount\n" + "\n".join(lines) + "\n")
    page.goto("/upload")
    page.locator("#connection-state").filter(has_text="connected").wait_for()
    page.get_by_label("File", exact=True).set_input_files(str(data))
    page.get_by_role("button", name="Upload").click()
    page.locator("#upload-sha").filter(has_text=re.compile(r"^[0-9a-f]{64}$")).wait_for(timeout=LONG_MS)
    page.get_by_label("Rejected rows allowed").fill("5")
    page.get_by_role("button", name="Start import").click()
    outcome = page.locator("#import-counts")
    outcome.filter(has_text="Imported 1,199 of 1,200 rows").wait_for(timeout=LONG_MS)
    assert "1 rejected" in outcome.inner_text()
    reject = page.locator("#rejects-table tbody tr").first
    assert reject.locator("td").nth(0).inner_text() == "11"
    assert reject.locator("td").nth(1).inner_text() == "amount"
    with page.expect_download() as rejects:
        page.get_by_role("button", name="Download all rejects (CSV)").click()
    filed = Path(rejects.value.path()).read_text().splitlines()
    assert filed == ["line,column,reason", "11,amount,not an integer: 'lots'"]

    # The report builder offers the dataset's columns and ticks none ("Group by" not prefilled).
    groups = page.locator('[aria-label="Report 1: group by"] input')
    groups.first.wait_for()
    assert groups.count() == 3 and page.locator('[aria-label="Report 1: group by"] input:checked').count() == 0
    page.get_by_label("region", exact=True).check()
    page.get_by_label("Report 1 metric 1: operation").select_option("sum")
    page.get_by_label("Report 1 metric 1: column").select_option("amount")
    page.get_by_label("xlsx").check()
    page.get_by_role("button", name="Start report").click()
    files = page.locator("#report-files a")
    files.nth(2).wait_for(timeout=LONG_MS)
    assert files.all_inner_texts() == ["summary.csv", "summary.html", "summary.xlsx"]
    downloaded = {}
    for name in ("summary.csv", "summary.html", "summary.xlsx"):
        with page.expect_download() as download:
            files.filter(has_text=name).click()
        downloaded[name] = Path(download.value.path()).read_bytes()
    assert downloaded["summary.csv"].decode().splitlines()[0] == "region,sum_amount"
    assert b"<table" in downloaded["summary.html"] and downloaded["summary.xlsx"][:2] == b"PK"
    shots(page, "upload-flow")

    # Importing the same file into the same dataset again asks first; "Don't import" imports nothing.
    jobs_before = site.api("GET", "/api/jobs?kind=data_import", token).json()["total"]
    page.get_by_role("button", name="Start import").click()
    question = page.locator("#import-confirm-text")
    question.filter(has_text="This file is already in dataset").wait_for()
    assert "1,199 rows" in question.inner_text()
    page.get_by_role("button", name="Don't import").click()
    assert site.api("GET", "/api/jobs?kind=data_import", token).json()["total"] == jobs_before
    dataset = site.api("GET", "/api/datasets/sales", token).json()["dataset"]
    assert dataset["row_count"] == 1199

    # The upload's own job cannot be re-run from its page, and says why.
    upload_job = site.api("GET", "/api/uploads", token).json()["uploads"][0]["job_id"]
    page.goto(f"/jobs/{upload_job}")
    page.locator("#summary .badge").filter(has_text="completed").wait_for()
    page.wait_for_function("() => document.getElementById('rerun-wrap').title.includes('Upload page')")
    assert page.locator("#rerun").is_disabled()


def test_an_import_and_a_report_start_from_the_new_job_form_with_pickers(
    tab: Any, site: ServerProcess, token: str
) -> None:
    """After the upload test: its file is offered by name, datasets by name, columns by name."""
    page = tab
    new_job_form(page, "data_import")
    upload = site.api("GET", "/api/uploads", token).json()["uploads"][0]
    page.get_by_label("Uploaded file").select_option(upload["upload_id"])
    assert upload["filename"] in page.get_by_label("Uploaded file").locator("option:checked").inner_text()
    page.get_by_label("Dataset", exact=True).fill("sales_copy")
    assert page.get_by_label("Into an existing dataset").input_value() == ""  # optional: not forced
    page.get_by_role("button", name="Start job").click()
    job_id = started_job_id(page)
    row = page.locator(f'tr.job[data-job-id="{job_id}"]')
    row.locator(".badge").filter(has_text=re.compile(r"^completed$")).wait_for(timeout=LONG_MS)
    assert "1,199 of 1,200 rows imported · 1 rejected" in row.inner_text()
    page.goto(f"/jobs/{job_id}")  # the same import again would be refused: the dataset exists now
    page.wait_for_function("() => document.getElementById('rerun-wrap').title.includes('exists now')")
    assert page.locator("#rerun").is_disabled()

    new_job_form(page, "batch_report")
    page.get_by_label("Dataset", exact=True).select_option("sales_copy")
    page.get_by_label("region", exact=True).check()
    page.get_by_role("button", name="Start job").click()
    report_id = started_job_id(page)
    page.locator(f'tr.job[data-job-id="{report_id}"] .badge').filter(has_text="completed").wait_for(timeout=LONG_MS)
    job = read_job(site, token, report_id)
    assert job["params"]["dataset"] == "sales_copy"
    assert job["params"]["reports"] == [{"name": "summary", "group_by": ["region"], "metrics": [{"op": "count"}]}]


# -- 2. runs you can read -------------------------------------------------------------------


def test_a_running_job_page_shows_details_follows_its_log_and_asks_before_cancel(
    tab: Any, site: ServerProcess, token: str
) -> None:
    page = tab
    job_id = start_simulate(page, 600, 0.05, {"Log every N steps": 1})
    page.goto(f"/jobs/{job_id}")
    page.locator("#summary .badge").filter(has_text="running").wait_for()
    assert page.locator("#summary progress").get_attribute("data-state") == "running"
    assert page.locator("#d-owner").inner_text() == "alice"
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page.locator("#d-started").inner_text())
    assert page.locator("#d-finished").inner_text() == "–"
    wait_for(lambda: page.evaluate("window.heraldLog.lines.length") > 40, timeout=30)
    assert page.locator("#log-follow").is_checked()
    shots(page, "job-running")
    # Scrolling up stops following; new lines keep coming without moving the view.
    page.locator("#log").evaluate("l => { l.scrollTop = 0; l.dispatchEvent(new Event('scroll')); }")
    wait_for(lambda: not page.locator("#log-follow").is_checked(), timeout=5)
    seen = page.evaluate("window.heraldLog.lines.length")
    wait_for(lambda: page.evaluate("window.heraldLog.lines.length") > seen + 5, timeout=30)
    assert page.locator("#log").evaluate("l => l.scrollTop") == 0
    page.get_by_label("Follow").check()
    # Cancel asks first and is not the Re-run button's colour.
    cancel = page.get_by_role("button", name="Cancel job…")
    assert cancel.evaluate("b => getComputedStyle(b).color") != page.locator("#rerun").evaluate(
        "b => getComputedStyle(b).color"
    )
    cancel.click()
    page.get_by_role("button", name="Yes, cancel job").click()
    page.locator("#summary .badge").filter(has_text="cancelled").wait_for(timeout=LONG_MS)
    assert page.locator("#summary progress").get_attribute("data-state") == "cancelled"
    assert page.get_by_role("button", name="Clear").count() == 0


def test_a_completed_job_page_and_an_unknown_job(tab: Any, site: ServerProcess, token: str) -> None:
    page = tab
    job_id = start_simulate(page, 5, 0.01)
    page.goto(f"/jobs/{job_id}")
    page.locator("#summary .badge").filter(has_text=re.compile(r"^completed$")).wait_for(timeout=LONG_MS)
    assert page.locator("#summary progress").get_attribute("data-state") == "succeeded"
    page.locator("#d-finished").filter(has_text=re.compile(r"\d\d:\d\d:\d\d")).wait_for()
    shots(page, "job-completed")

    page.goto("/jobs/99999")
    page.get_by_role("alert").filter(has_text="Job 99999 not found.").wait_for()
    assert page.locator("#job-body").is_hidden() and page.locator("#job-loading").is_hidden()


def test_a_job_with_100000_log_lines_opens_with_search_working(tab: Any, site: ServerProcess, token: str) -> None:
    page = tab
    job_id = start_simulate(page, 99999, 0, {"Log every N steps": 1})
    wait_for(lambda: read_job(site, token, job_id)["status"] == "completed", timeout=600, interval=0.5)
    # Measured from a blank tab: not the dashboard's unload (it watched the job's 100,000 lines).
    page.goto("about:blank")
    started = time.monotonic()
    page.goto(f"{site.url}/jobs/{job_id}")
    page.locator("#log-count").filter(has_text="100,000 lines").wait_for(timeout=LONG_MS)
    opened = page.evaluate("performance.now()")
    print(
        f"\n100,000-line job page: log complete {opened:.0f} ms after navigation start "
        f"({time.monotonic() - started:.2f} s wall); rows in the DOM: {page.locator('.log-line').count()}"
    )
    assert page.locator(".log-line").count() < 200  # only the rows in view are drawn
    page.get_by_label("Search log").fill("reached step 77777")
    page.locator("#log-count").filter(has_text="1 of 100,000 lines match").wait_for()
    assert page.locator(".log-line .msg").all_inner_texts() == ["reached step 77777"]
    assert page.locator(".log-line mark").inner_text() == "reached step 77777"


# -- 3. the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_pages_past_fifty_searches_and_counts_by_status(
    tab: Any, site: ServerProcess, token: str
) -> None:
    page = tab
    total = site.api("GET", "/api/jobs?top_level=true", token).json()["total"]
    for _ in range(max(0, 52 - total)):
        site.api("POST", "/api/jobs", token, json={"kind": "simulate", "params": {"steps": 1, "interval": 0}})
    total = site.api("GET", "/api/jobs?top_level=true", token).json()["total"]
    page.goto("/")
    rows = page.locator("#jobs tbody tr.job")
    wait_for(lambda: rows.count() == 50, timeout=10)
    page.locator("#jobs-shown").filter(has_text=f"Showing 50 of {total} jobs").wait_for()
    page.get_by_role("button", name="Load more").click()
    wait_for(lambda: rows.count() == total, timeout=10)
    assert page.get_by_role("button", name="Load more").is_hidden()
    failed = site.api("GET", "/api/jobs?top_level=true&status=failed", token).json()["total"]
    page.locator('.chip[data-status="failed"] strong').filter(has_text=str(failed)).wait_for()
    page.get_by_label("Search jobs").fill("99999")  # the 100,000-line job's steps
    wait_for(lambda: rows.count() == 1, timeout=10)
    assert "Steps 99999" in rows.first.inner_text()


def test_websocket_test_messages_keep_their_numbers_as_new_ones_arrive(tab: Any) -> None:
    page = tab
    page.goto("/websocket-test")
    page.locator("#connection-state").filter(has_text="connected").wait_for()
    page.get_by_role("button", name="Ping").click()
    page.locator("#rtt").filter(has_text=re.compile(r"\d+ ms$")).wait_for()
    numbers = page.eval_on_selector_all("#message-log li", "items => items.map(i => [i.value, i.textContent])")
    assert numbers and [n for n, _ in numbers] == sorted((n for n, _ in numbers), reverse=True)
    page.get_by_role("button", name="Echo").click()
    page.locator("#echo-result").filter(has_text="hello herald").wait_for()
    later = dict(page.eval_on_selector_all("#message-log li", "items => items.map(i => [i.textContent, i.value])"))
    assert all(later[text] == number for number, text in numbers)  # each message kept its number
