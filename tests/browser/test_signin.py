"""Staff sign-in in a real browser: landing on next, refusals and the rate limit, CSRF, sign-out,
expiry, and the front and sign-in pages' accessibility (axe-core) and looks (screenshots)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

from playwright._impl._api_structures import SetCookieParam
from playwright.sync_api import Cookie, Page, expect
from sqlalchemy import func, select

from app.db import unit_of_work, utcnow
from app.models_pickup import SignInFailure
from tests.browser.harness import LiveServer, StaffLogin, assert_accessible, shot, sign_in

PROBE = "/_probe/whoami"


def again(cookie: Cookie, value: str) -> SetCookieParam:
    """A cookie the browser held, to set again with this value."""
    return {"name": cookie["name"], "value": value, "domain": cookie["domain"], "path": cookie["path"],
            "httpOnly": cookie["httpOnly"], "sameSite": cookie["sameSite"], "secure": cookie["secure"]}  # fmt: skip


def test_a_signed_out_visitor_is_sent_to_sign_in_and_lands_on_the_page_asked_for(
    page: Page, live_server: LiveServer, staff_login: StaffLogin
) -> None:
    page.goto(live_server.at(PROBE + "?tab=ready"))
    assert page.url == live_server.at("/sign-in?next=" + "/_probe/whoami?tab%3Dready")
    page.get_by_label("User name").fill(staff_login.username)
    page.get_by_label("Password").fill(staff_login.password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert page.url == live_server.at(PROBE + "?tab=ready")
    expect(page.locator("#who")).to_have_text("Ann Counter at ST-A")
    expect(page.get_by_text("Signed in as")).to_contain_text("Ann Counter")
    assert_accessible(page)
    shot(page, "signed-in-shell")


def test_a_wrong_password_is_refused_with_a_401_and_says_nothing_of_which_part(
    page: Page, live_server: LiveServer, staff_login: StaffLogin
) -> None:
    page.goto(live_server.at("/sign-in"))
    page.get_by_label("User name").fill(staff_login.username)
    page.get_by_label("Password").fill("not-the-password")
    with page.expect_response(lambda r: r.request.method == "POST" and "/sign-in" in r.url) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401
    alert = page.get_by_role("alert").filter(has_text="User name or password is wrong")
    expect(alert).to_be_visible()
    # The message is tied to both fields, and the name typed is kept.
    expect(page.get_by_label("Password")).to_have_attribute("aria-describedby", "signin-error")
    expect(page.get_by_label("User name")).to_have_value(staff_login.username)
    assert_accessible(page)
    shot(page, "sign-in-refused")
    # An unknown name reads exactly the same.
    page.get_by_label("User name").fill("nobody-here")
    page.get_by_label("Password").fill("not-the-password")
    with page.expect_response(lambda r: r.request.method == "POST" and "/sign-in" in r.url) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401
    expect(alert).to_be_visible()


def _try(page: Page, live_server: LiveServer, username: str, password: str) -> int:
    page.goto(live_server.at("/sign-in"))
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_response(lambda r: r.request.method == "POST" and "/sign-in" in r.url) as answer:
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()  # the page it lands on may set the cookie again
    return answer.value.status


def test_too_many_refusals_in_the_window_are_a_429_and_older_ones_do_not_count(
    page: Page, live_server: LiveServer, staff_login: StaffLogin
) -> None:
    limit = int(live_server.app.config["SIGN_IN_MAX_FAILURES"])
    window = int(live_server.app.config["SIGN_IN_WINDOW_S"])
    factory = live_server.app.extensions["session_factory"]
    # Refusals from before the window: the right password still works.
    with unit_of_work(factory) as session:
        for i in range(limit):
            at = utcnow() - timedelta(seconds=window + 60 + i)
            session.add(SignInFailure(username=staff_login.username, remote_addr="127.0.0.1", at=at))
    assert _try(page, live_server, staff_login.username, staff_login.password) == 303
    page.context.clear_cookies()
    # Refusals inside the window: after `limit` of them, even the right password is refused.
    assert [_try(page, live_server, staff_login.username, "wrong-password") for _ in range(limit)] == [
        401
    ] * limit
    assert _try(page, live_server, staff_login.username, staff_login.password) == 429
    message = page.get_by_role("alert").filter(has_text="Too many attempts")
    expect(message).to_have_text(re.compile(r"Too many attempts, try again in \d+ minutes?\."))
    minutes = int(re.search(r"in (\d+) minute", message.inner_text()).group(1))  # type: ignore[union-attr]
    assert 1 <= minutes <= window // 60
    assert "Signed in as" not in page.content()
    with unit_of_work(factory) as session:
        # The succeeded sign-in pruned the old refusals; the limited one was not counted.
        assert session.scalar(select(func.count()).select_from(SignInFailure)) == limit
    shot(page, "sign-in-rate-limited")


def test_a_form_posted_without_its_csrf_token_is_refused(
    page: Page, live_server: LiveServer, staff_login: StaffLogin
) -> None:
    sign_in(page, live_server, staff_login, PROBE)
    # The session cookie goes with page.request; the token does not.
    refused = page.request.post(live_server.at("/sign-out"), form={"next": "/"}, max_redirects=0)
    assert refused.status == 400
    assert "The form has expired. Reload the page and try again." in refused.text()
    forged = page.request.post(live_server.at("/sign-out"), form={"csrf_token": "forged"}, max_redirects=0)
    assert forged.status == 400
    refused_sign_in = page.request.post(
        live_server.at("/sign-in"),
        form={"username": staff_login.username, "password": staff_login.password},
        max_redirects=0,
    )
    assert refused_sign_in.status == 400
    page.goto(live_server.at(PROBE))
    assert page.url == live_server.at(PROBE)  # still signed in: nothing was done


def test_sign_out_ends_the_session_and_back_does_not_bring_the_page_back(
    page: Page, live_server: LiveServer, staff_login: StaffLogin
) -> None:
    sign_in(page, live_server, staff_login, PROBE)
    assert page.url == live_server.at(PROBE)
    copied = [c for c in page.context.cookies() if c["name"] == "omnistock_session"]
    assert copied and copied[0]["httpOnly"] and copied[0]["sameSite"] == "Lax"
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert page.url == live_server.at("/sign-in")
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    assert_accessible(page)
    shot(page, "signed-out")
    page.go_back()
    page.wait_for_load_state()
    assert page.url.startswith(live_server.at("/sign-in")), page.url
    page.goto(live_server.at(PROBE))
    assert page.url.startswith(live_server.at("/sign-in?next="))
    # A copy of the old cookie is dead too (sign-out raised the account's session epoch).
    page.context.add_cookies([again(copied[0], copied[0]["value"])])
    page.goto(live_server.at(PROBE))
    assert page.url.startswith(live_server.at("/sign-in?next="))


def test_a_session_older_than_session_hours_is_refused(
    page: Page, live_server: LiveServer, staff_login: StaffLogin
) -> None:
    sign_in(page, live_server, staff_login, PROBE)
    app = live_server.app
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    cookie = next(c for c in page.context.cookies() if c["name"] == "omnistock_session")
    data = serializer.loads(cookie["value"])
    # Signed with the app's own key, so only the age can refuse it.
    data["staff"]["iat"] = int(time.time() - float(app.config["SESSION_HOURS"]) * 3600 - 30)
    page.context.add_cookies([again(cookie, serializer.dumps(data))])
    page.goto(live_server.at(PROBE))
    assert page.url.startswith(live_server.at("/sign-in?next="))
    # A fresh issue time, same account and epoch: admitted, so the age alone was the reason.
    data["staff"]["iat"] = int(time.time())
    page.context.add_cookies([again(cookie, serializer.dumps(data))])
    page.goto(live_server.at(PROBE))
    assert page.url == live_server.at(PROBE)


def test_the_front_page_says_what_this_is_and_where_to_go(
    page: Page, tablet: Page, live_server: LiveServer
) -> None:
    response = page.goto(live_server.at("/"))
    assert response is not None and response.status == 200
    expect(page).to_have_title("Home · omnistock")
    for name, href in [("Pickup screen", "/pickup"), ("API docs", "/api/swagger"),
                       ("OpenAPI document", "/api/openapi.json"), ("Health", "/healthz"), ("Metrics", "/metrics")]:  # fmt: skip
        expect(page.get_by_role("main").get_by_role("link", name=name, exact=True)).to_have_attribute(
            "href", href
        )
    # Everything comes from this server: no CDN, no outside font.
    assert page.evaluate(
        "() => performance.getEntriesByType('resource').every(r => r.name.startsWith(location.origin))"
    )
    assert float(page.evaluate("() => getComputedStyle(document.body).fontSize").removesuffix("px")) >= 16
    # The skip link comes first and moves focus to main.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()
    assert_accessible(page)
    shot(page, "front-page")
    tablet.goto(live_server.at("/"))
    assert_accessible(tablet)
    shot(tablet, "front-page-tablet")


def test_the_sign_in_page_is_accessible_and_its_controls_are_large_enough(
    page: Page, tablet: Page, live_server: LiveServer
) -> None:
    response = page.goto(live_server.at("/sign-in"))
    assert response is not None and response.status == 200
    expect(page.get_by_label("User name")).to_have_attribute("autocomplete", "username")
    expect(page.get_by_label("Password")).to_have_attribute("autocomplete", "current-password")
    for control in (page.get_by_label("User name"), page.get_by_label("Password"),
                    page.get_by_role("button", name="Sign in")):  # fmt: skip
        box = control.bounding_box()
        assert box is not None and box["height"] >= 44, box
    expect(page.get_by_label("User name")).to_be_focused()  # ready to type at the counter
    assert_accessible(page)
    shot(page, "sign-in")
    tablet.goto(live_server.at("/sign-in"))
    assert_accessible(tablet)
    shot(tablet, "sign-in-tablet")
