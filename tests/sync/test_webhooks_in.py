"""Vendor webhooks in (Shopify, Square): a signature that does not match is a 401 with no effect; a
good delivery is only a hint that makes the feed due (never a ledger write); a redelivery and a
delivery older than the last good run are dropped; the scheduler's next tick runs the feed."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.db import read_only
from app.models_sync import WebhookReceipt
from app.sync.fakes.harness import rfc3339
from app.sync.fakes.square import FakeSquare
from app.sync.runner import due_feeds, run_due
from tests.conftest import Api
from tests.sync.channel_fixtures import (  # noqa: F401 - fixtures by name
    SHOP_SECRET,
    Shop,
    level,
    shop_fixture,
    shopify_fixture,
    web_orders,
)
from tests.sync.conftest import LOCATION_MAIN, VARIATION_A

SQUARE_KEY = "square-signature-key-0123456789"  # what the square_feed fixture puts in its variable
Run = Callable[..., dict[str, Any]]


def _receipts(app: Flask) -> list[WebhookReceipt]:
    with read_only(app.extensions["session_factory"]) as s:
        rows = list(s.scalars(select(WebhookReceipt).order_by(WebhookReceipt.received_at)))
        s.expunge_all()
        return rows


def _said(r: Any) -> str:
    body = r.get_json()
    assert isinstance(body, dict), r.data
    return str(body["status"])


def _due(app: Flask) -> list[tuple[str, str]]:
    return due_feeds(app.extensions["session_factory"])


def test_shopify_deliveries_are_verified_deduplicated_and_only_make_the_feed_due(
    app: Flask,
    client: FlaskClient,
    shop: Callable[..., Shop],
    run: Run,
    ops: Api,
    receive: Callable[..., Any],
) -> None:
    s = shop()
    receive(("TEE", "ST-A", 10))
    # The shop's clock is 30 s behind ours: its fresh deliveries must not look older than our run.
    s.fake.set_clock(s.fake.now() - timedelta(seconds=30))
    assert run("shop")["status"] == "succeeded"
    assert _due(app) == [], "just run: not due on schedule"
    order = s.fake.place_order([(s.items["TEE"], 2)], location_gid=s.online)
    payload = s.fake.order_payload(order)

    headers, body = s.fake.webhook_request("orders/create", payload, "not-the-secret")
    r = client.post("/hooks/shopify/shop", data=body, headers=headers)
    assert r.status_code == 401 and r.mimetype == "application/problem+json", (r.status_code, r.data)
    assert _receipts(app) == [] and _due(app) == []

    headers, body = s.fake.webhook_request("orders/create", payload, SHOP_SECRET, webhook_id="delivery-1")
    r = client.post("/hooks/shopify/shop", data=body, headers=headers)
    assert r.status_code == 200 and _said(r) == "accepted", r.data
    assert _due(app) == [("shop", "webhook")]
    assert web_orders(ops) == [] and level(ops, "TEE", "ST-A")["reserved"] == 0, "a hint never writes"

    r = client.post("/hooks/shopify/shop", data=body, headers=headers)
    assert r.status_code == 200 and _said(r) == "duplicate", r.data
    old = s.fake.now() - timedelta(hours=1)  # a retry carrying the original, pre-run payload
    headers, body = s.fake.webhook_request("orders/create", payload, SHOP_SECRET, triggered_at=old)
    r = client.post("/hooks/shopify/shop", data=body, headers=headers)
    assert r.status_code == 200 and _said(r) == "stale", r.data
    assert len(_receipts(app)) == 2 and sum(x.processed_at is None for x in _receipts(app)) == 1
    assert web_orders(ops) == [] and s.fake.applied == 1, "still nothing done: only a hint was kept"


def test_the_next_tick_runs_a_hinted_shopify_feed_and_marks_the_hint_processed(
    app: Flask,
    client: FlaskClient,
    shop: Callable[..., Shop],
    run: Run,
    ops: Api,
    receive: Callable[..., Any],
) -> None:
    s = shop()
    receive(("TEE", "ST-A", 10))
    assert run("shop")["status"] == "succeeded"
    order = s.fake.place_order([(s.items["TEE"], 2)], location_gid=s.online)
    headers, body = s.fake.webhook_request("orders/create", s.fake.order_payload(order), SHOP_SECRET)
    assert _said(client.post("/hooks/shopify/shop", data=body, headers=headers)) == "accepted"
    done = run_due(app.extensions["session_factory"], app.config)
    assert done == {"shop": "succeeded"}, done
    assert all(x.processed_at is not None for x in _receipts(app)), "the run acted on the hint"
    assert _due(app) == []
    (placed,) = web_orders(ops)
    assert placed["external_id"] == order.rsplit("/", 1)[-1]
    assert level(ops, "TEE", "ST-A")["reserved"] == 2
    assert s.available("TEE") == 10 - 2 - 1


def test_a_shopify_topic_we_do_not_act_on_is_acknowledged_without_a_receipt(
    app: Flask, client: FlaskClient, shop: Callable[..., Shop]
) -> None:
    s = shop()
    headers, body = s.fake.webhook_request("products/update", {"id": 1}, SHOP_SECRET)
    r = client.post("/hooks/shopify/shop", data=body, headers=headers)
    assert r.status_code == 200 and _said(r) == "accepted"
    assert _receipts(app) == []
    r = client.post("/hooks/shopify/nope", data=body, headers=headers)
    assert r.status_code == 404, r.data


def _square_post(client: FlaskClient, body: bytes, key: str = SQUARE_KEY, url: str | None = None) -> Any:
    url = url or "http://localhost/hooks/square/pos"  # the request URL as Flask sees it
    headers = {
        "Content-Type": "application/json",
        "X-Square-Hmacsha256-Signature": FakeSquare.sign(key, url, body),
    }
    return client.post("/hooks/square/pos", data=body, headers=headers)


def test_square_notifications_are_verified_deduplicated_and_only_make_the_feed_due(
    app: Flask, client: FlaskClient, square_feed: FakeSquare, run: Run, on_hand: Callable[[str, str], int]
) -> None:
    assert run()["status"] == "succeeded"
    assert on_hand("TEE", "ST-A") == 79
    square_feed.advance(10)
    square_feed.sell(VARIATION_A, LOCATION_MAIN, 2)
    square_feed.advance(10)
    body = square_feed.notification([(VARIATION_A, LOCATION_MAIN)])

    r = _square_post(client, body, key="wrong-key")
    assert r.status_code == 401 and r.mimetype == "application/problem+json", r.data
    r = _square_post(client, body, url="http://elsewhere/hooks/square/pos")
    assert r.status_code == 401, "the URL is part of what Square signs"
    assert _receipts(app) == [] and _due(app) == []

    r = _square_post(client, body)
    assert r.status_code == 200 and _said(r) == "accepted", r.data
    assert _due(app) == [("pos", "webhook")]
    assert on_hand("TEE", "ST-A") == 79, "a notification never writes the ledger"
    r = _square_post(client, body)
    assert r.status_code == 200 and _said(r) == "duplicate", r.data

    stale = json.loads(body)
    stale["event_id"] = "0f1e2d3c-stale-delivery"
    stale["created_at"] = rfc3339(square_feed.now() - timedelta(hours=1), 9)
    r = _square_post(client, json.dumps(stale).encode())
    assert r.status_code == 200 and _said(r) == "stale", r.data

    assert on_hand("TEE", "ST-A") == 79 and len(_receipts(app)) == 2


def test_the_next_tick_runs_a_hinted_square_feed_and_marks_the_hint_processed(
    app: Flask, client: FlaskClient, square_feed: FakeSquare, run: Run, on_hand: Callable[[str, str], int]
) -> None:
    assert run()["status"] == "succeeded"
    square_feed.advance(10)
    square_feed.sell(VARIATION_A, LOCATION_MAIN, 2)
    square_feed.advance(10)
    r = _square_post(client, square_feed.notification([(VARIATION_A, LOCATION_MAIN)]))
    assert _said(r) == "accepted", r.data
    assert on_hand("TEE", "ST-A") == 79
    done = run_due(app.extensions["session_factory"], app.config)
    assert done == {"pos": "succeeded"}, done
    assert on_hand("TEE", "ST-A") == 77
    assert all(x.processed_at is not None for x in _receipts(app))
    assert _due(app) == []
