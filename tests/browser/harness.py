"""Helpers for browser tests: a live server, screenshots, the axe-core check, staff sign-in.

Fixtures live in tests/browser/conftest.py; these are plain functions a test imports:
    from tests.browser.harness import assert_accessible, shot, sign_in
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from playwright.sync_api import Page
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

from app.db import unit_of_work
from app.models import Location
from app.services import keys, staff
from tests.conftest import STORE_DEFAULTS, Api

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"  # axe-core 4.11.0 (MPL-2.0)
BLOCKING_IMPACTS = ("serious", "critical")
DEFAULT_PASSWORD = "counter-pass-1"


@dataclass
class StaffLogin:
    """A staff account made for a test: what to type on the sign-in page."""

    username: str
    password: str
    display_name: str
    locations: tuple[str, ...]


@dataclass
class LiveServer:
    """The app served over HTTP on 127.0.0.1 in a thread (url), and the same app in process (app)."""

    app: Flask
    url: str
    _server: BaseWSGIServer
    _thread: threading.Thread
    _ops_key: str | None = field(default=None)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def at(self, path: str) -> str:
        """The full URL of a path on this server."""
        return self.url + path

    @property
    def ops(self) -> Api:
        """An ops API client (Flask's test client, same app and database) to set up data."""
        if self._ops_key is None:
            with unit_of_work(self.app.extensions["session_factory"]) as session:
                _, self._ops_key = keys.create_key(session, role="ops", name="browser test ops")
        return Api(self.app.test_client(), self._ops_key)

    def forget_keys(self) -> None:
        self._ops_key = None

    def ensure_stores(self, codes: Iterable[str]) -> None:
        """Create the stores (and a 'web' channel) that do not exist yet."""
        factory = self.app.extensions["session_factory"]
        with unit_of_work(factory) as session:
            have = set(session.scalars(select(Location.code)))
        missing = [c for c in codes if c not in have]
        if not missing:
            return
        ops = self.ops
        assert (
            ops.put("/api/v1/channels", {"code": "web", "name": "web", "kind": "online"}).status_code == 200
        )
        for code in missing:
            r = ops.post(
                "/api/v1/locations", {**STORE_DEFAULTS, "code": code, "name": code, "channels": ["web"]}
            )
            assert r.status_code == 201, r.json

    def make_staff(
        self,
        username: str = "ann",
        password: str = DEFAULT_PASSWORD,
        display_name: str = "Ann Counter",
        locations: tuple[str, ...] = ("ST-A",),
    ) -> StaffLogin:
        """A staff account at these stores (created if missing), ready to sign in with."""
        self.ensure_stores(locations)
        with unit_of_work(self.app.extensions["session_factory"]) as session:
            staff.create_user(
                session,
                username=username,
                display_name=display_name,
                password=password,
                location_codes=locations,
            )
        return StaffLogin(username, password, display_name, locations)


def serve(app: Flask) -> LiveServer:
    """Serve app on 127.0.0.1 on a free port in a daemon thread (threaded: CSS and page in parallel)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in the test output
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    return LiveServer(app=app, url=f"http://127.0.0.1:{server.server_port}", _server=server, _thread=thread)


def shot(page: Page, name: str) -> Path:
    """Save a full-page PNG screenshot as tests/artifacts/screenshots/<name>.png (and return its path)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Page, impacts: tuple[str, ...] = BLOCKING_IMPACTS) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; its violations of these impacts."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(
                f"    at {json.dumps(node['target'])}: {node.get('failureSummary', '').replace(chr(10), ' ')}"
            )
    return "\n".join(lines)


def assert_accessible(page: Page) -> None:
    """No axe-core violation of impact serious or critical on the page as it is now."""
    violations = axe_violations(page)
    if violations:
        report = describe(violations)
        print(report)
        raise AssertionError(
            f"{len(violations)} serious/critical accessibility violation(s) on {page.url}:\n{report}"
        )


def sign_in(page: Page, server: LiveServer, login: StaffLogin, next_path: str | None = None) -> None:
    """Sign in through the sign-in page (to next_path afterwards, when given)."""
    target = "/sign-in" + (f"?next={next_path}" if next_path else "")
    page.goto(server.at(target))
    page.get_by_label("User name").fill(login.username)
    page.get_by_label("Password").fill(login.password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
