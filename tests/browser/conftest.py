"""Browser test fixtures: the app served live on SQLite, headless Debian Chromium through Playwright.

Fixtures:
    live_server -> LiveServer   the server with empty tables (per test); .url, .at(path), .app,
                                .ops (an ops API client), .make_staff(...), .ensure_stores(...)
    browser     -> Browser      one Chromium per session (/usr/bin/chromium)
    context     -> BrowserContext  a fresh one per test (no cookies), 1280x900
    page        -> Page         a page in that context
    tablet      -> Page         a page in a fresh 820x1180 touch context (a counter tablet)
    staff_login -> StaffLogin   a staff account "ann" at store ST-A (password in .password)

Chromium missing: the browser tests skip, loudly; with CI=true they fail instead. Every test here
is marked `browser`. Screenshots go to tests/artifacts/screenshots/ (not committed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import render_template_string
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser.harness import LiveServer, StaffLogin, serve
from tests.conftest import IN_CI, _clean, _migrate, make_test_app

CHROMIUM = os.environ.get("OMNISTOCK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
_skipped: list[str] = []

# A signed-in page for these tests alone, so sign-in is tested without the pickup screen.
PROBE_PAGE = """{% extends "base.html" %}{% block title %}Probe{% endblock %}{% block content %}
<h1>Signed-in probe</h1><p id="who">{{ who.name }} at {{ who.location_codes | join(", ") }}</p>
{% endblock %}"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)


def _probe_blueprint() -> Any:
    from app.web.auth import principal
    from app.web.pages import PageBlueprint, signed_in

    bp = PageBlueprint("browser_probe", __name__, url_prefix="/_probe")

    @bp.get("/whoami")
    @signed_in
    def whoami() -> str:
        return render_template_string(PROBE_PAGE, who=principal())

    return bp


@pytest.fixture(scope="session")
def _live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{base / 'omnistock.db'}"
    _migrate(url)
    app = make_test_app(url, base / "instance")
    app.register_blueprint(_probe_blueprint())
    server = serve(app)
    yield server
    server.stop()
    app.extensions["engine"].dispose()


@pytest.fixture
def live_server(_live: LiveServer) -> LiveServer:
    """The live server with empty tables (accounts, refusals, keys and all)."""
    _clean(_live.app)
    _live.forget_keys()
    return _live


@pytest.fixture(scope="session")
def _playwright() -> Iterator[Playwright]:
    if not os.path.exists(CHROMIUM):
        reason = f"Chromium not found at {CHROMIUM}: the browser tests did NOT run (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"{reason}; it is mandatory under CI=true")
        _skipped.append(reason)
        pytest.skip(reason)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(_playwright: Playwright) -> Iterator[Browser]:
    launched = _playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def tablet(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(
        viewport={"width": 820, "height": 1180},
        device_scale_factor=1,
        is_mobile=True,
        has_touch=True,
        locale="en-GB",
    )
    ctx.set_default_timeout(10_000)
    yield ctx.new_page()
    ctx.close()


@pytest.fixture
def staff_login(live_server: LiveServer) -> StaffLogin:
    return live_server.make_staff()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(f"BROWSER TESTS SKIPPED: {_skipped[0]}", red=True, bold=True)
        terminalreporter.write_line(bar, red=True, bold=True)
