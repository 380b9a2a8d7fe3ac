"""Staff accounts: the ops API, the service's sign-in rules (rate limit, epochs), the CLI, and the
session sign-in of the pages through the test client; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.db import read_only, unit_of_work, utcnow
from app.models_pickup import SignInFailure, StaffUser
from app.services import staff
from tests.conftest import Api, make_test_app

USERS = "/api/v1/staff-users"
PASSWORD = "counter-pass-1"


@pytest.fixture
def stores(network: Callable[..., None]) -> None:
    network(
        [{"code": "ST-A"}, {"code": "ST-B"}, {"code": "WH-1", "kind": "warehouse", "pickup": False}],
        ["TEE"],
    )


def new_user(ops: Api, username: str = "ann", locations: tuple[str, ...] = ("ST-A",), **kw: Any) -> Any:
    body = {
        "username": username,
        "display_name": "Ann Counter",
        "password": PASSWORD,
        "locations": list(locations),
    }
    return ops.post(USERS, {**body, **kw})


# ---------------------------------------------------------------- API


def test_ops_creates_reads_lists_and_changes_an_account_never_answering_the_password(
    ops: Api, stores: None
) -> None:
    r = new_user(ops, locations=("ST-B", "ST-A"))
    assert r.status_code == 201, r.json
    assert (
        r.json["username"] == "ann" and r.json["locations"] == ["ST-A", "ST-B"] and r.json["active"] is True
    )
    assert "password" not in r.text and "hash" not in r.text and PASSWORD not in r.text
    assert ops.get(f"{USERS}/ann").json["display_name"] == "Ann Counter"
    assert [u["username"] for u in ops.get(USERS).json["items"]] == ["ann"]
    r = ops.patch(f"{USERS}/ann", {"display_name": "Ann B", "locations": ["ST-B"], "active": False})
    assert r.status_code == 200, r.json
    assert (r.json["display_name"], r.json["locations"], r.json["active"]) == ("Ann B", ["ST-B"], False)
    assert PASSWORD not in ops.get(USERS).text


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"username": "Ann"}, 422, "username"),
        ({"username": "an"}, 422, "username"),
        ({"username": "a b c"}, 422, "username"),
        ({"password": "short"}, 422, "password"),
        ({"locations": []}, 422, "locations"),
        ({"locations": ["WH-1"]}, 422, "locations"),
        ({"locations": ["NOPE"]}, 404, None),
        ({"role": "ops"}, 422, "role"),
    ],
)
def test_an_account_is_refused_for_a_bad_name_password_or_store(
    ops: Api, stores: None, change: dict[str, Any], status: int, field: str | None
) -> None:
    r = new_user(ops, **change)
    assert r.status_code == status, r.json
    assert r.mimetype == "application/problem+json"
    if field:
        assert field in {e["field"] for e in r.json["errors"]}, r.json


def test_a_name_is_taken_once_and_unknown_names_are_404(ops: Api, stores: None) -> None:
    assert new_user(ops).status_code == 201
    assert new_user(ops).status_code == 409
    assert ops.get(f"{USERS}/nobody").status_code == 404
    assert ops.patch(f"{USERS}/nobody", {"active": False}).status_code == 404


def test_a_password_keeps_its_spaces(app: Flask, ops: Api, stores: None) -> None:
    assert new_user(ops, password="  spaced pass  ").status_code == 201
    with unit_of_work(app.extensions["session_factory"]) as session:
        user = staff.authenticate(session, "ann", "  spaced pass  ", **limits())
        assert user.username == "ann"


def test_staff_and_storefront_keys_may_not_manage_accounts(
    client: FlaskClient, make_key: Callable[..., str], stores: None
) -> None:
    for key in (make_key("staff", ("ST-A",)), make_key("storefront")):
        caller = Api(client, key)
        assert caller.get(USERS).status_code == 403
        assert new_user(caller).status_code == 403


# ---------------------------------------------------------------- service


def limits(**kw: Any) -> dict[str, Any]:
    return {"remote_addr": "10.0.0.1", "now": utcnow(), "max_failures": 3, "window_s": 900, **kw}


def attempt(app: Flask, username: str, password: str, **kw: Any) -> str:
    """One sign-in as the page makes it (the refusal is committed): ok, refused or limited."""
    with unit_of_work(app.extensions["session_factory"]) as session:
        try:
            staff.authenticate(session, username, password, **limits(**kw))
        except staff.TooManyAttempts:
            return "limited"
        except staff.SignInRefused:
            return "refused"
    return "ok"


def test_unknown_names_wrong_passwords_and_disabled_accounts_are_refused_alike(
    app: Flask, ops: Api, stores: None
) -> None:
    new_user(ops)
    new_user(ops, username="bob")
    ops.patch(f"{USERS}/bob", {"active": False})
    assert attempt(app, "ann", PASSWORD) == "ok"
    assert attempt(app, "ANN ", PASSWORD) == "ok"
    assert [
        attempt(app, n, p) for n, p in [("ann", "wrong-password"), ("nobody", PASSWORD), ("bob", PASSWORD)]
    ] == ["refused"] * 3
    with read_only(app.extensions["session_factory"]) as session:
        assert session.scalar(select(func.count()).select_from(SignInFailure)) == 3


def test_a_name_is_limited_after_max_failures_in_the_window_even_with_the_right_password(
    app: Flask, ops: Api, stores: None
) -> None:
    new_user(ops)
    assert [attempt(app, "ann", "wrong-password") for _ in range(3)] == ["refused"] * 3
    assert attempt(app, "ann", PASSWORD) == "limited"
    # From another address too: the limit is the name's.
    assert attempt(app, "ann", PASSWORD, remote_addr="10.9.9.9") == "limited"
    # Once the window has passed, the right password works again.
    assert attempt(app, "ann", PASSWORD, now=utcnow() + timedelta(seconds=901)) == "ok"


def test_one_address_trying_many_names_is_limited(app: Flask, ops: Api, stores: None) -> None:
    new_user(ops)
    tries = 3 * staff.ADDRESS_FACTOR
    assert [attempt(app, f"name{i}", "wrong-password") for i in range(tries)] == ["refused"] * tries
    assert attempt(app, "ann", PASSWORD) == "limited"
    assert attempt(app, "ann", PASSWORD, remote_addr="10.0.0.2") == "ok"


def test_the_wait_is_until_the_oldest_counted_refusal_leaves_the_window(
    app: Flask, ops: Api, stores: None
) -> None:
    new_user(ops)
    start = utcnow()
    for i in range(3):
        attempt(app, "ann", "wrong-password", now=start + timedelta(seconds=100 * i))
    with (
        unit_of_work(app.extensions["session_factory"]) as session,
        pytest.raises(staff.TooManyAttempts) as limited,
    ):
        staff.authenticate(session, "ann", PASSWORD, **limits(now=start + timedelta(seconds=250)))
    assert limited.value.retry_after_s == 900 - 250


def test_a_session_epoch_moves_on_a_new_password_or_deactivation(app: Flask, ops: Api, stores: None) -> None:
    new_user(ops)
    factory = app.extensions["session_factory"]
    with read_only(factory) as session:
        user = session.scalar(select(StaffUser).where(StaffUser.username == "ann"))
        assert user is not None
        uid, epoch = user.id, user.session_epoch
        who = staff.principal_for(session, uid, epoch)
    assert who is not None
    assert (who.role, who.key_id, who.user_id, who.location_codes, who.name) == (
        "staff",
        None,
        uid,
        ("ST-A",),
        "Ann Counter",
    )
    assert who.scope() is not None and who.scope() == who.location_ids
    ops.patch(f"{USERS}/ann", {"display_name": "Ann B"})  # a new name keeps sessions
    with read_only(factory) as session:
        assert staff.principal_for(session, uid, epoch) is not None
    ops.patch(f"{USERS}/ann", {"password": "another-pass-2"})
    with read_only(factory) as session:
        assert staff.principal_for(session, uid, epoch) is None
        assert staff.principal_for(session, uid, epoch + 1) is not None
    ops.patch(f"{USERS}/ann", {"active": False})
    with read_only(factory) as session:
        assert staff.principal_for(session, uid, epoch + 1) is None
        assert staff.principal_for(session, uid, epoch + 2) is None  # disabled, whatever the epoch
        assert staff.principal_for(session, uid + 1000, 0) is None


def test_a_success_prunes_the_names_refusals_older_than_the_window(
    app: Flask, ops: Api, stores: None
) -> None:
    new_user(ops)
    long_ago = utcnow() - timedelta(hours=2)
    attempt(app, "ann", "wrong-password", now=long_ago)
    attempt(app, "ann", "wrong-password")
    assert attempt(app, "ann", PASSWORD) == "ok"
    with read_only(app.extensions["session_factory"]) as session:
        assert session.scalar(select(func.count()).select_from(SignInFailure)) == 1


# ---------------------------------------------------------------- CLI


def test_the_cli_creates_with_a_generated_password_sets_one_disables_and_lists(
    app: Flask, stores: None
) -> None:
    runner = app.test_cli_runner()
    r = runner.invoke(
        args=["staff", "create", "cara", "--name", "Cara", "--location", "ST-A", "--location", "ST-B"]
    )
    assert r.exit_code == 0, r.output
    generated = r.output.strip().splitlines()[-1]
    assert len(generated) >= 20 and " " not in generated
    assert attempt(app, "cara", generated) == "ok"
    r = runner.invoke(args=["staff", "set-password", "cara", "--password-stdin"], input="typed-pass-99\n")
    assert r.exit_code == 0, r.output
    assert "typed-pass-99" not in r.output
    assert attempt(app, "cara", "typed-pass-99") == "ok"
    assert runner.invoke(args=["staff", "disable", "cara"]).exit_code == 0
    assert attempt(app, "cara", "typed-pass-99") == "refused"
    r = runner.invoke(args=["staff", "list"])
    assert r.output.strip() == "cara\tdisabled\tST-A,ST-B\tCara"
    r = runner.invoke(args=["staff", "create", "dan", "--name", "Dan", "--location", "ST-A", "--password-stdin"],
                      input="short\n")  # fmt: skip
    assert r.exit_code != 0 and "password" in r.output
    r = runner.invoke(args=["staff", "create", "dan", "--name", "Dan", "--location", "NOPE"])
    assert r.exit_code != 0 and "NOPE" in r.output


# ---------------------------------------------------------------- pages (test client)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: FlaskClient, username: str, password: str, next_path: str = "") -> Any:
    page = client.get("/sign-in")
    return client.post(
        "/sign-in",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_of(page.text),
            "next": next_path,
        },
    )


def test_sign_in_sets_a_hardened_cookie_and_goes_to_a_local_next_only(
    client: FlaskClient, ops: Api, stores: None
) -> None:
    new_user(ops)
    r = sign_in(client, "ann", PASSWORD, "/pickup?x=1")
    assert (r.status_code, r.headers["Location"]) == (303, "/pickup?x=1")
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("omnistock_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie  # SESSION_COOKIE_SECURE is off in tests
    page = client.get("/")
    assert "Signed in as" in page.text and "Ann Counter" in page.text
    for evil in (
        "https://evil.example/x",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "/sign-out",
    ):
        client.post("/sign-out", data={"csrf_token": csrf_of(client.get("/").text)})
        r = sign_in(client, "ann", PASSWORD, evil)
        assert (r.status_code, r.headers["Location"]) == (303, "/pickup"), evil


def test_a_wrong_password_is_a_401_page_and_too_many_a_429(
    app: Flask, client: FlaskClient, ops: Api, stores: None
) -> None:
    new_user(ops)
    r = sign_in(client, "ann", "wrong-password")
    assert r.status_code == 401 and "User name or password is wrong" in r.text
    assert sign_in(client, "nobody", "wrong-password").text.count("User name or password is wrong") == 1
    for _ in range(int(app.config["SIGN_IN_MAX_FAILURES"]) - 1):
        assert sign_in(client, "ann", "wrong-password").status_code == 401
    r = sign_in(client, "ann", PASSWORD)
    assert r.status_code == 429 and re.search(r"Too many attempts, try again in \d+ minutes?", r.text), r.text
    assert int(r.headers["Retry-After"]) > 0


def test_an_empty_form_names_its_fields(client: FlaskClient) -> None:
    r = sign_in(client, "", "")
    assert r.status_code == 422
    assert 'id="username-error"' in r.text and 'aria-describedby="username-error"' in r.text


def test_a_form_without_its_csrf_token_is_refused(client: FlaskClient, ops: Api, stores: None) -> None:
    new_user(ops)
    client.get("/sign-in")
    r = client.post("/sign-in", data={"username": "ann", "password": PASSWORD})
    assert r.status_code == 400 and r.mimetype == "text/html"
    assert "The form has expired. Reload the page and try again." in r.text
    assert sign_in(client, "ann", PASSWORD).status_code == 303
    r = client.post("/sign-out", data={"csrf_token": "forged"})
    assert r.status_code == 400
    assert "Signed in as" in client.get("/").text


def test_the_api_ignores_the_session_cookie_and_needs_no_csrf_token(
    client: FlaskClient, ops: Api, stores: None
) -> None:
    new_user(ops)
    sign_in(client, "ann", PASSWORD)
    assert client.get("/api/v1/locations").status_code == 401  # a cookie is not a key
    assert new_user(ops, username="bea").status_code == 201  # a key needs no CSRF token


def test_sign_out_ends_the_session_and_a_copy_of_its_cookie(
    client: FlaskClient, ops: Api, stores: None
) -> None:
    new_user(ops)
    sign_in(client, "ann", PASSWORD)
    copied = client.get_cookie("omnistock_session")
    assert copied is not None
    r = client.post("/sign-out", data={"csrf_token": csrf_of(client.get("/").text)})
    assert (r.status_code, r.headers["Location"]) == (303, "/sign-in")
    assert "You are signed out" in client.get("/sign-in").text
    assert "Signed in as" not in client.get("/").text
    client.set_cookie("omnistock_session", copied.value)
    assert "Signed in as" not in client.get("/").text


def test_a_session_older_than_session_hours_is_refused(
    app: Flask, client: FlaskClient, ops: Api, stores: None
) -> None:
    new_user(ops)
    sign_in(client, "ann", PASSWORD)
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    cookie = client.get_cookie("omnistock_session")
    assert cookie is not None
    data = serializer.loads(cookie.value)
    assert "Signed in as" in client.get("/").text
    hours = float(app.config["SESSION_HOURS"])
    data["staff"]["iat"] = int(time.time() - hours * 3600 - 5)
    client.set_cookie("omnistock_session", serializer.dumps(data))
    assert "Signed in as" not in client.get("/").text


def test_a_page_blueprint_with_signed_in_redirects_and_gives_the_principal(
    app: Flask, ops: Api, stores: None, tmp_path: Path
) -> None:
    from flask import jsonify

    from app.web.auth import principal
    from app.web.pages import PageBlueprint, signed_in

    # A fresh app on the same database, with one more page blueprint.
    fresh = make_test_app(app.config["DATABASE_URL"], tmp_path, SECRET_KEY="probe-secret")
    bp = PageBlueprint("probe", __name__, url_prefix="/probe")

    @bp.get("/who")
    @signed_in
    def who() -> Any:
        p = principal()
        return jsonify(name=p.name, role=p.role, scope=sorted(p.scope() or ()), codes=list(p.location_codes))

    fresh.register_blueprint(bp)
    client = fresh.test_client()
    try:
        r = client.get("/probe/who?a=1")
        assert (r.status_code, r.headers["Location"]) == (302, "/sign-in?next=/probe/who?a%3D1")
        assert client.get("/probe/who", headers={"Accept": "application/json"}).status_code == 401
        new_user(ops)
        r = sign_in(client, "ann", PASSWORD, "/probe/who?a=1")
        assert r.headers["Location"] == "/probe/who?a=1"
        r = client.get("/probe/who")
        assert r.status_code == 200 and r.json is not None
        assert (r.json["name"], r.json["role"], r.json["codes"]) == ("Ann Counter", "staff", ["ST-A"])
        assert len(r.json["scope"]) == 1
    finally:
        fresh.extensions["engine"].dispose()
