"""The one error map: HTML pages for pages and browsers, problem+json for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel

from app import create_app
from app.domain.errors import InvalidInput, NotFound
from app.web.pages import PageBlueprint

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SECRET = "s3cr3t-connection-string"


@pytest.fixture
def page_app(tmp_path: Path) -> Flask:
    """The real app plus a page blueprint whose views fail in each way an error can."""
    app = create_app({"PROFILE": "test", "DATABASE_URL": "sqlite://", "INSTANCE_PATH": str(tmp_path)})
    # These forms test the error map, not CSRF (tests/integration/test_staff_api.py does that).
    app.config["WTF_CSRF_ENABLED"] = False
    pages = PageBlueprint("counter", __name__, url_prefix="/counter")

    @pages.get("/missing")
    def missing() -> str:
        raise NotFound("no pickup <script>alert(1)</script>", pickup="P-1")

    @pages.get("/invalid")
    def invalid() -> str:
        raise InvalidInput("2 field(s) invalid", [{"field": "code", "message": "too long"}])

    @pages.get("/broken")
    def broken() -> str:
        raise RuntimeError(SECRET)

    class Form(BaseModel):
        qty: int

    @pages.post("/form")
    def form() -> str:
        Form.model_validate({"qty": "many"})
        return "ok"

    app.register_blueprint(pages)
    return app


@pytest.fixture
def pages(page_app: Flask) -> FlaskClient:
    return page_app.test_client()


def test_a_page_404_is_an_html_page_with_the_request_id(pages: FlaskClient) -> None:
    r = pages.get("/counter/no-such-page", headers={"X-Request-ID": "req-42"})
    assert (r.status_code, r.mimetype) == (404, "text/html")
    page = r.data.decode()
    assert "404" in page and "Not found" in page
    assert "req-42" in page
    assert "<link" not in page and "<script" not in page  # no CDN, nothing to load


def test_a_domain_error_on_a_page_says_what_went_wrong_escaped(pages: FlaskClient) -> None:
    r = pages.get("/counter/missing")
    assert (r.status_code, r.mimetype) == (404, "text/html")
    page = r.data.decode()
    assert "no pickup &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert f"<code>{r.headers['X-Request-ID']}</code>" in page


def test_fields_at_fault_are_listed_on_the_page(pages: FlaskClient) -> None:
    r = pages.get("/counter/invalid")
    assert (r.status_code, r.mimetype) == (422, "text/html")
    assert "<code>code</code>: too long" in r.data.decode()
    r = pages.post("/counter/form")
    assert (r.status_code, r.mimetype) == (422, "text/html")
    assert "<code>qty</code>" in r.data.decode()


def test_an_unexpected_error_on_a_page_shows_no_stack_trace(pages: FlaskClient) -> None:
    r = pages.get("/counter/broken")
    assert (r.status_code, r.mimetype) == (500, "text/html")
    page = r.data.decode()
    assert SECRET not in page and "Traceback" not in page and "RuntimeError" not in page
    assert r.headers["X-Request-ID"] in page


def test_a_page_client_that_asks_for_json_gets_a_problem(pages: FlaskClient) -> None:
    r = pages.get("/counter/missing", headers={"Accept": "application/json"})
    assert (r.status_code, r.mimetype) == (404, "application/problem+json")
    assert r.json["pickup"] == "P-1"


def test_an_api_404_is_still_a_problem(pages: FlaskClient) -> None:
    for accept in (None, "*/*", "application/json"):
        r = pages.get("/api/v1/no-such-route", headers={"Accept": accept} if accept else {})
        assert (r.status_code, r.mimetype) == (404, "application/problem+json"), accept
        assert r.json["request_id"] == r.headers["X-Request-ID"]


def test_a_browser_on_the_api_gets_a_page(pages: FlaskClient) -> None:
    r = pages.get("/api/v1/skus", headers={"Accept": BROWSER})
    assert (r.status_code, r.mimetype) == (401, "text/html")
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="omnistock"'


def test_paths_outside_any_page_blueprint_stay_problems(pages: FlaskClient) -> None:
    for path in ("/nothing", "/healthz/x", "/metrics/x"):
        r = pages.get(path)
        assert (r.status_code, r.mimetype) == (404, "application/problem+json"), path
    assert pages.get("/nothing", headers={"Accept": BROWSER}).mimetype == "text/html"


def test_a_405_says_which_methods_are_allowed(pages: FlaskClient) -> None:
    r = pages.post("/healthz")
    assert (r.status_code, r.mimetype) == (405, "application/problem+json")
    assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}
    r = pages.post("/counter/missing")
    assert (r.status_code, r.mimetype) == (405, "text/html")
    assert "GET" in r.headers["Allow"]
