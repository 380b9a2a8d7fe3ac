"""A stock file uploaded over the ops API reconciles a CSV feed, or is refused whole with its lines."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Api


def _csv_feed(
    network: Callable[..., None], configure: Callable[..., None], receive: Callable[..., Any]
) -> None:
    network([{"code": "ST-A", "name": "A", "kind": "store", "lat": 51.51, "lon": -0.12, "channels": ["web"]}],
            ["TEE", "CAP"])  # fmt: skip
    receive(("TEE", "ST-A", 10), ("CAP", "ST-A", 4))
    configure(code="tills", name="Till export", role="source", connector="csv", locations={"ST-A": "ST-A"},
              match_items_by_sku=True, settings={"settle_s": 0, "auto_apply_limit": 5})  # fmt: skip


def _upload(client: FlaskClient, ops: Api, body: bytes, content_type: str = "text/csv", **query: str) -> Any:
    return client.post(
        "/api/v1/feeds/tills/upload", data=body, query_string=query,
        headers={**ops.headers, "Content-Type": content_type},
    )  # fmt: skip


def test_an_uploaded_file_reconciles_the_feed(
    app: Flask, client: FlaskClient, ops: Api, network: Callable[..., None], configure: Callable[..., None],
    receive: Callable[..., Any], on_hand: Callable[[str, str], int],
) -> None:  # fmt: skip
    _csv_feed(network, configure, receive)
    taken = datetime.now(UTC).isoformat()  # after the receipts: an earlier export would not know them
    r = _upload(client, ops, b"sku;location;on_hand\r\nTEE;ST-A;8\r\nCAP;ST-A;4\r\n", as_of=taken)
    assert r.status_code == 200, r.json
    assert r.json["status"] == "succeeded" and r.json["counts"]["adjusted"] == 1, r.json
    assert r.json["trigger"] == "upload"
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A")) == (8, 4)


def test_a_bad_file_is_refused_whole_and_changes_nothing(
    app: Flask, client: FlaskClient, ops: Api, network: Callable[..., None], configure: Callable[..., None],
    receive: Callable[..., Any], on_hand: Callable[[str, str], int],
) -> None:  # fmt: skip
    _csv_feed(network, configure, receive)
    r = _upload(client, ops, b"sku,location,on_hand\nTEE,ST-A,9\nCAP,ST-A,n/a\n")
    assert r.status_code == 200 and r.json["status"] == "failed", r.json
    assert "line 3" in r.json["error"], r.json["error"]
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A")) == (10, 4)


def test_an_upload_must_be_a_csv_file_for_a_csv_feed(
    app: Flask, client: FlaskClient, ops: Api, network: Callable[..., None], configure: Callable[..., None],
    receive: Callable[..., Any],
) -> None:  # fmt: skip
    _csv_feed(network, configure, receive)
    assert _upload(client, ops, b'{"sku": "TEE"}', content_type="application/json").status_code == 415
    empty = _upload(client, ops, b"")
    assert empty.status_code == 422 and empty.json["errors"][0]["field"] == "body", empty.json
    assert _upload(client, ops, b"sku,on_hand\nTEE,1\n", as_of="yesterday").status_code == 422


def test_an_export_older_than_what_the_ledger_since_recorded_waits(
    app: Flask, client: FlaskClient, ops: Api, network: Callable[..., None], configure: Callable[..., None],
    receive: Callable[..., Any], on_hand: Callable[[str, str], int],
) -> None:  # fmt: skip
    _csv_feed(network, configure, receive)
    r = _upload(client, ops, b"sku,location,on_hand\nTEE,ST-A,8\n", as_of="2026-01-01T09:00:00+00:00")
    assert r.json["status"] == "succeeded" and r.json["counts"]["deferred"] == 1, r.json
    assert on_hand("TEE", "ST-A") == 10, "the receipt made after that export is not undone"
