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
        if is_sqlite(engine):
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
        else:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


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
