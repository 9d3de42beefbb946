"""Browser tests: Playwright for Python driving Debian's Chromium against the real server.

The server is the same subprocess the integration tests use (``python wsgi.py`` on a free
loopback port). Playwright's own browser download is never used: the test command
installs Debian's ``chromium``; without it (or without Playwright) these tests skip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import conftest as integration
from tests.integration.conftest import PASSWORD, ROOT, ServerProcess

CHROMIUM = os.environ.get("HERALD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Screenshots and other things a person may want to look at after a run (git-ignored).
ARTIFACTS = ROOT / "test-artifacts"
#: Generous: two cores are shared with other work; nothing here is a speed claim.
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (scripts/test.sh installs Debian's chromium)", allow_module_level=True)

pytestmark = pytest.mark.e2e

#: The real server, exactly as the integration tests start it (users alice and bob).
server = integration.server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Any, server: ServerProcess) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) pointed at the server."""
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1000, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    """A page whose console errors fail loudly in the test output."""
    page = context.new_page()
    page.on("pageerror", lambda exc: print(f"page error: {exc}"))
    return page


def sign_in(page: Any, path: str = "/", username: str = "alice") -> None:
    """Open ``path``, get sent to /login, sign in with the form, land back on ``path``."""
    page.goto(path)
    page.wait_for_url(re.compile(r"/login\?next="))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(path) + r"$"))


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
