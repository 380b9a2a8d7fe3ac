"""The /api/v1 guard: who calls, with what role, and whether the body is a JSON object it can take."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from tests.conftest import Api

SKUS = "/api/v1/skus"


def _problem(r: object, status: int, code: str) -> dict:
    assert (r.status_code, r.mimetype) == (status, "application/problem+json"), r.data  # type: ignore[attr-defined]
    body = r.json  # type: ignore[attr-defined]
    assert body["code"] == code
    return body


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer "}, {"Authorization": "Bearer    "}, {"X-API-Key": ""}],
)
def test_no_key_or_an_empty_one_is_a_401(client: FlaskClient, headers: dict[str, str]) -> None:
    body = _problem(client.get(SKUS, headers=headers), 401, "unauthorized")
    assert "send an API key" in body["detail"]


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x1f", "\x7f", "\t", " ", "é"])
def test_a_key_with_a_control_character_is_a_401_not_a_500(
    client: FlaskClient, make_key: Callable[..., str], bad: str
) -> None:
    # On PostgreSQL a NUL in the key's prefix reached the lookup and was a 500.
    key = make_key("ops")
    prefix, rest = key[:8], key[8:]
    for header, value in (("Authorization", f"Bearer {prefix}{bad}{rest}"), ("X-API-Key", f"osk_{bad}_x")):
        body = _problem(client.get(SKUS, headers={header: value}), 401, "unauthorized")
        assert body["detail"] == "malformed API key"


def test_a_wrong_or_revoked_key_is_a_401_and_a_good_one_passes(
    client: FlaskClient, make_key: Callable[..., str]
) -> None:
    key = make_key("ops")
    assert client.get(SKUS, headers={"X-API-Key": key}).status_code == 200
    assert client.get(SKUS, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    body = _problem(client.get(SKUS, headers={"X-API-Key": key[:-2] + "zz"}), 401, "unauthorized")
    assert body["detail"] == "unknown or revoked API key"


def test_a_role_without_the_declaration_is_refused(storefront: Api) -> None:
    body = _problem(storefront.post(SKUS, {"skus": []}), 403, "forbidden")
    assert body["role"] == "storefront"


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_body_nested_past_the_cap_is_refused_by_name(ops: Api) -> None:
    r = ops.post("/api/v1/stock/movements", {"movements": _nested(40)})
    body = _problem(r, 422, "validation_error")
    assert body["errors"] == [{"field": "body", "message": "nests deeper than 32 levels"}]
    # Past the JSON parser's own limit it was "not valid JSON" (400); it is the same refusal.
    deep = '{"movements": ' + "[" * 2000 + "]" * 2000 + "}"
    r = ops.client.post(
        "/api/v1/stock/movements", data=deep, headers={**ops.headers, "Content-Type": "application/json"}
    )
    assert _problem(r, 422, "validation_error")["errors"][0]["field"] == "body"


def test_a_body_within_the_cap_reaches_the_schema(ops: Api) -> None:
    # 31 levels inside the object: the cap lets it through, the schema then names the field.
    r = ops.post("/api/v1/stock/movements", {"movements": _nested(31)})
    body = _problem(r, 422, "validation_error")
    assert body["errors"][0]["field"].startswith("movements")


def test_bodies_that_are_not_json_objects_are_named(ops: Api) -> None:
    r = ops.client.post(SKUS, data="{}", headers={**ops.headers, "Content-Type": "text/plain"})
    _problem(r, 415, "unsupported_media_type")
    r = ops.client.post(SKUS, data="{nope", headers={**ops.headers, "Content-Type": "application/json"})
    _problem(r, 400, "invalid_json")
    r = ops.client.post(SKUS, data=json.dumps(None), headers={**ops.headers, "Content-Type": "application/json"})
    assert _problem(r, 422, "validation_error")["errors"] == [{"field": "body", "message": "got null"}]
