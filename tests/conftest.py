"""Fixtures: the app on SQLite and on a real PostgreSQL, clients with keys, data factories.

PostgreSQL: TEST_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) is
used as the admin connection; each test session creates and drops its own database. With
CI=true a missing server fails the run; elsewhere the PostgreSQL tests skip, loudly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import create_app
from app.db import unit_of_work
from app.services import keys

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_pg_problem: list[str] = []


def _migrate(url: str) -> None:
    from alembic import command

    from app.cli import alembic_config

    command.upgrade(alembic_config(url), "head")


def _pg_available() -> str | None:
    try:
        engine = create_engine(ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "no server here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (dropped afterwards)."""
    problem = _pg_available()
    if problem is not None:
        _pg_problem.append(problem)
        if IN_CI:
            pytest.fail(f"PostgreSQL is mandatory under CI=true and unreachable at {ADMIN_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {ADMIN_URL}: {problem}")
    name = f"omnistock_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    yield from _pg_lifecycle(name)


def _pg_lifecycle(name: str) -> Iterator[str]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        _migrate(url)
        yield url
    finally:
        for key in [k for k in _apps if k == url]:
            _apps.pop(key).extensions["engine"].dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    for application in _apps.values():
        application.extensions["engine"].dispose()


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "omnistock.db"
    url = f"sqlite:///{path}"
    _migrate(url)
    return url


def make_test_app(url: str, instance: Path, **overrides: Any) -> Flask:
    return create_app({"PROFILE": "test", "DATABASE_URL": url, "INSTANCE_PATH": str(instance), **overrides})


TABLES_IN_DELETE_ORDER: list[str] = []


def _clean(app: Flask) -> None:
    from app.db import Base, is_sqlite
    from app.services.orders import refs

    refs.forget()  # ids cached per process would name rows of an earlier test

    engine = app.extensions["engine"]
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        # Children before parents. On PostgreSQL, DELETE of a test's few rows and a reset of every
        # sequence take a tenth of what TRUNCATE ... RESTART IDENTITY does (0.02 s against 0.19 s
        # for 35 tables), paid before each of several hundred tests.
        for name in tables:
            conn.execute(text(f"DELETE FROM {name}"))
        if not is_sqlite(engine):
            conn.execute(text("SELECT setval(c.oid, 1, false) FROM pg_class c WHERE c.relkind = 'S'"))


_apps: dict[str, Flask] = {}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once per database backend."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest) -> str:
    fixture = "pg_database" if backend == "postgresql" else "sqlite_database"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def app(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """The app on the current backend with empty tables."""
    if db_url not in _apps:
        _apps[db_url] = make_test_app(db_url, tmp_path_factory.mktemp("instance"))
    application = _apps[db_url]
    _clean(application)
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_key(app: Flask) -> Callable[..., str]:
    def _make(role: str, locations: tuple[str, ...] = ()) -> str:
        with unit_of_work(app.extensions["session_factory"]) as session:
            _, plain = keys.create_key(session, role=role, name=f"test {role}", locations=locations)
        return plain

    return _make


class Api:
    """A test client that sends one key's Authorization header and JSON."""

    def __init__(self, client: FlaskClient, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(path, headers={**self.headers, **kw.pop("headers", {})}, json=json, **kw)

    def put(self, path: str, json: Any = None) -> Any:
        return self.client.put(path, headers=self.headers, json=json)

    def patch(self, path: str, json: Any = None) -> Any:
        return self.client.patch(path, headers=self.headers, json=json)


@pytest.fixture
def ops(client: FlaskClient, make_key: Callable[..., str]) -> Api:
    return Api(client, make_key("ops"))


@pytest.fixture
def storefront(client: FlaskClient, make_key: Callable[..., str]) -> Api:
    return Api(client, make_key("storefront"))


STORE_DEFAULTS: dict[str, Any] = {"kind": "store", "ships": True, "pickup": True, "priority": 50}


@pytest.fixture
def network(ops: Api) -> Callable[..., None]:
    """Create channels, locations and SKUs through the API: network(locations=[...], skus=[...])."""

    def _build(
        locations: list[dict[str, Any]], skus: list[str], channels: tuple[str, ...] = ("web",)
    ) -> None:
        for ch in channels:
            assert (
                ops.put(
                    "/api/v1/channels",
                    {"code": ch, "name": ch, "kind": "store" if ch == "store" else "online"},
                ).status_code
                == 200
            )
        for loc in locations:
            body = {**STORE_DEFAULTS, "name": loc["code"], "channels": list(channels), **loc}
            r = ops.post("/api/v1/locations", body)
            assert r.status_code == 201, r.json
        r = ops.post("/api/v1/skus", {"skus": [{"code": s, "name": s} for s in skus]})
        assert r.status_code == 201, r.json

    return _build


@pytest.fixture
def receive(ops: Api) -> Callable[..., Any]:
    """Post receipts: receive(("SKU", "LOC", qty), ...)."""

    def _receive(*rows: tuple[str, str, int]) -> Any:
        r = ops.post(
            "/api/v1/stock/movements",
            {"movements": [{"kind": "receipt", "sku": s, "location": loc, "qty": q} for s, loc, q in rows]},
        )
        assert r.status_code == 201, r.json
        return r.json

    return _receive


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `pg` every test that runs against PostgreSQL (scripts/test runs those and the rest as
    two processes at once)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "pg_database" in getattr(item, "fixturenames", ()) or params.get("backend") == "postgresql":
            item.add_marker(pytest.mark.pg)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_problem and not IN_CI:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(
            f"POSTGRESQL SUITE SKIPPED: no server at {ADMIN_URL} ({_pg_problem[0]}).", red=True, bold=True
        )
        terminalreporter.write_line(
            "Concurrency, locking, idempotency and migration tests did NOT run against PostgreSQL.",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(bar, red=True, bold=True)


# --- Two stores and a warehouse, for the authorisation matrix and the contract fuzz ---------------

WORLD_LOCATIONS: list[dict[str, Any]] = [
    {"code": "ST-A", "lat": 51.512, "lon": -0.124},
    {"code": "ST-B", "lat": 51.539, "lon": -0.143},
    {"code": "WH-1", "kind": "warehouse", "lat": 51.53, "lon": -0.28, "pickup": False, "priority": 10},
]
NEAR_A = {"type": "ship", "lat": 51.513, "lon": -0.125}
# A wrong key has the shape of a real one, so it reaches the key lookup rather than the shape check.
WRONG_KEY = "osk_0123456789ab_" + "x" * 43


class StoreWorld:
    """Stores ST-A and ST-B and warehouse WH-1; each stock-keeping unit is held at one place only.

    TEE is at ST-A, CAP at ST-B, MUG at WH-1, so where an order is fulfilled is known in advance.
    keys maps each caller (none, wrong, revoked, storefront, staff_a, staff_b, ops) to the key it
    sends ("" for none); staff_a is scoped to ST-A and staff_b to ST-B.
    """

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.ids: dict[str, int] = {}
        self.customer = "cust-a"

    def api(self, client: FlaskClient, caller: str) -> Api:
        return Api(client, self.keys[caller])


@pytest.fixture
def store_world(
    app: Flask, client: FlaskClient, network: Callable[..., None], receive: Callable[..., Any], ops: Api
) -> StoreWorld:
    """StoreWorld with, in ids: order_a/fulfilment_a (ship, only at ST-A, allocated), order_b (only
    at ST-B), order_split (ST-A and ST-B), order_cancel (2 TEE at ST-A), fulfilment_cancel (at ST-A,
    allocated), order_delivered (2 TEE shipped from ST-A), transfer_a (WH-1 to a pickup at ST-A,
    shipped, awaiting receipt), pickup_a (that pickup) and webhook."""
    network(WORLD_LOCATIONS, ["TEE", "CAP", "MUG"], channels=("web",))
    receive(("TEE", "ST-A", 20), ("CAP", "ST-B", 20), ("MUG", "WH-1", 20))
    made: dict[str, str] = {"none": "", "wrong": WRONG_KEY, "ops": ops.headers["Authorization"][7:]}
    with unit_of_work(app.extensions["session_factory"]) as session:
        for caller, role, where in [
            ("storefront", "storefront", ()),
            ("staff_a", "staff", ("ST-A",)),
            ("staff_b", "staff", ("ST-B",)),
            ("revoked", "ops", ()),
        ]:
            key, made[caller] = keys.create_key(session, role=role, name=f"world {caller}", locations=where)
            if caller == "revoked":
                keys.revoke(session, key.id)
    world = StoreWorld(made)
    shop = world.api(client, "storefront")

    def place(lines: list[tuple[str, int]], delivery: dict[str, Any] = NEAR_A, **kw: Any) -> dict[str, Any]:
        body = {"channel": "web", "lines": [{"sku": s, "qty": q} for s, q in lines], "delivery": delivery, **kw}
        r = shop.post("/api/v1/orders", body)
        assert r.status_code == 201, r.json
        return r.json  # type: ignore[no-any-return]

    def at(placed: dict[str, Any], location: str, kind: str | None = None) -> int:
        found = [f["id"] for f in placed["fulfilments"] if f["location"] == location and kind in (None, f["type"])]
        assert len(found) == 1, placed["fulfilments"]
        return int(found[0])

    def advance(fulfilment: int, *steps: str) -> None:
        for step in steps:
            r = ops.post(f"/api/v1/fulfilments/{fulfilment}/{step}")
            assert r.status_code == 200, r.json

    order_a = place([("TEE", 1)], customer_ref=world.customer)
    assert [f["location"] for f in order_a["fulfilments"]] == ["ST-A"]
    world.ids.update(order_a=order_a["id"], fulfilment_a=at(order_a, "ST-A"))
    order_b = place([("CAP", 1)])
    assert [f["location"] for f in order_b["fulfilments"]] == ["ST-B"]
    world.ids["order_b"] = order_b["id"]
    split = place([("TEE", 1), ("CAP", 1)])
    assert sorted(f["location"] for f in split["fulfilments"]) == ["ST-A", "ST-B"]
    world.ids["order_split"] = split["id"]
    world.ids["order_cancel"] = place([("TEE", 2)])["id"]
    world.ids["fulfilment_cancel"] = at(place([("TEE", 1)]), "ST-A")
    delivered = place([("TEE", 2)])
    advance(at(delivered, "ST-A"), "pick", "ship")
    world.ids["order_delivered"] = delivered["id"]
    pickup = place([("MUG", 1)], delivery={"type": "pickup", "location": "ST-A"})
    world.ids["transfer_a"] = at(pickup, "WH-1", "transfer")
    world.ids["pickup_a"] = at(pickup, "ST-A", "pickup")
    world.ids["order_pickup"] = pickup["id"]
    advance(world.ids["transfer_a"], "pick", "ship")
    hook = ops.post(
        "/api/v1/webhooks",
        {"url": "http://127.0.0.1:9/hook", "secret": "s" * 24, "event_types": ["*"]},
    )
    assert hook.status_code == 201, hook.json
    world.ids["webhook"] = hook.json["id"]
    return world
