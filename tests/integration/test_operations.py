"""CLI, migrations, health, metrics and the OpenAPI document."""

from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from sqlalchemy import text

from app.cli import alembic_config
from app.db import unit_of_work
from tests.conftest import Api


def test_keys_create_prints_the_key_alone_on_its_last_line_and_it_works(
    app: Flask, client: FlaskClient
) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed", "--skus", "20"]).exit_code == 0
    result = runner.invoke(args=["keys", "create", "--role", "staff", "--location", "ST-CAMDEN"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    r = client.get("/api/v1/stock/levels", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    assert {row["location"] for row in r.json["items"]} <= {"ST-CAMDEN"}
    bad = runner.invoke(args=["keys", "create", "--role", "staff"])
    assert bad.exit_code != 0


def test_a_revoked_key_stops_working(app: Flask, client: FlaskClient) -> None:
    runner = app.test_cli_runner()
    out = runner.invoke(args=["keys", "create", "--role", "ops"]).output.strip().splitlines()
    key_id = out[0].split()[2]
    headers = {"Authorization": f"Bearer {out[-1]}"}
    assert client.get("/api/v1/locations", headers=headers).status_code == 200
    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 0
    assert client.get("/api/v1/locations", headers=headers).status_code == 401


def test_ledger_verify_finds_a_tampered_level_and_rebuild_repairs_it(
    app: Flask, network: Callable[..., None], receive: Callable[..., Any]
) -> None:
    network([{"code": "ST-A"}], ["TEE"])
    receive(("TEE", "ST-A", 5))
    runner = app.test_cli_runner()
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0
    with unit_of_work(app.extensions["session_factory"]) as s:
        s.execute(text("UPDATE stock_levels SET on_hand = on_hand + 1"))
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 1
    assert "projection=(on_hand=6" in result.output
    assert "ledger=(on_hand=5" in result.output
    assert "rebuilt 1" in runner.invoke(args=["ledger", "rebuild"]).output
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_the_demo_is_a_believable_retailer(app: Flask, ops: Api) -> None:
    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    locations = ops.get("/api/v1/locations").json["items"]
    assert sum(loc["kind"] == "store" for loc in locations) >= 6
    assert sum(loc["kind"] == "warehouse" for loc in locations) == 1
    assert all(51.3 < loc["lat"] < 51.7 for loc in locations)  # one city
    skus = ops.get("/api/v1/skus", query_string={"limit": 1000}).json["items"]
    assert len(skus) >= 200
    assert len(result.output.count("osk_") * "k") >= 3
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0
    assert "already present" in app.test_cli_runner().invoke(args=["demo", "seed"]).output


def test_migrations_have_one_head_and_match_the_models(db_url: str) -> None:
    cfg = alembic_config(db_url)
    assert len(ScriptDirectory.from_config(cfg).get_heads()) == 1
    command.check(cfg)  # raises if models and migrations disagree


def test_migrations_run_down_and_up_again(backend: str, request: pytest.FixtureRequest, tmp_path) -> None:
    url = request.getfixturevalue("pg_database") if backend == "postgresql" else f"sqlite:///{tmp_path}/m.db"
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")
    command.upgrade(cfg, "head")
    command.check(cfg)


def test_health_readiness_and_metrics(client: FlaskClient, ops: Api) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    ops.get("/api/v1/locations")
    body = client.get("/metrics").data.decode()
    assert 'omnistock_http_requests_total{method="GET",route="/api/v1/locations",status="200"}' in body
    assert "omnistock_http_request_duration_seconds_bucket" in body


def test_readiness_fails_when_the_database_is_unreachable(tmp_path) -> None:
    from tests.conftest import make_test_app

    app = make_test_app("postgresql+psycopg://nobody@127.0.0.1:1/none", tmp_path)
    r = app.test_client().get("/readyz")
    assert (r.status_code, r.json["checks"]["database"]) == (503, "unreachable")


def test_every_response_carries_a_request_id(client: FlaskClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32


def test_the_openapi_document_is_valid_and_served_with_local_docs(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json
    validate(spec)
    assert "/api/v1/stock/movements" in spec["paths"]
    post = spec["paths"]["/api/v1/stock/movements"]["post"]
    assert post["security"] == [{"ApiKey": []}, {"ApiKeyHeader": []}]
    assert spec["components"]["securitySchemes"]["ApiKeyHeader"]["name"] == "X-API-Key"
    assert "Roles: ops" in post["description"]
    page = client.get("/api/swagger").data.decode()
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page
    with client.get("/api/swagger/js/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200
        assert len(asset.data) > 100_000


def test_unknown_routes_and_methods_are_problems(client: FlaskClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code in (401, 404)
    r = client.get("/nothing")
    assert (r.status_code, r.mimetype) == (404, "application/problem+json")


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_public_pages_need_no_key(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 200
