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


def test_bodies_that_are_not_json_objects_are_named(ops: Api) -> None:
    r = ops.client.post(SKUS, data="{}", headers={**ops.headers, "Content-Type": "text/plain"})
    _problem(r, 415, "unsupported_media_type")
    r = ops.client.post(SKUS, data="{nope", headers={**ops.headers, "Content-Type": "application/json"})
    _problem(r, 400, "invalid_json")
    r = ops.client.post(SKUS, data=json.dumps(None), headers={**ops.headers, "Content-Type": "application/json"})
    assert _problem(r, 422, "validation_error")["errors"] == [{"field": "body", "message": "got null"}]
