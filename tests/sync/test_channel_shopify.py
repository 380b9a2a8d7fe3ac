"""Shopify channel end to end over real HTTP: the shop shows what the ledger may sell (after
reservations, safety stock and the buffer), a sale between our read and our write is taken in
before the retry, and the shop's orders become orders of channel web once each, or are kept
refused with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from app.db import read_only
from app.services import ledger as ledger_service
from app.sync import runs
from app.sync.runner import run_feed
from tests.conftest import Api
from tests.sync.channel_fixtures import (  # noqa: F401 - fixtures by name
    SHOP_TOKEN_VAR,
    Shop,
    inbound,
    level,
    shop_fixture,
    shopify_fixture,
    web_orders,
)
from tests.sync.conftest import Sleeps

SET = "inventorySetQuantities"
Run = Callable[..., dict[str, Any]]


def _verify(app: Flask) -> None:
    with read_only(app.extensions["session_factory"]) as s:
        assert ledger_service.verify(s) == []


def _mutations(shop: Shop) -> int:
    return sum(1 for c in shop.fake.calls("POST") if SET in c["body"])


def _stock(ops: Api, receive: Callable[..., Any]) -> None:
    """TEE: 10 at ST-A (3 reserved by a pickup), 6 at ST-B (safety stock 2); CAP: 3 at ST-A."""
    receive(("TEE", "ST-A", 10), ("TEE", "ST-B", 6), ("CAP", "ST-A", 3))
    r = ops.put("/api/v1/stock/levels/TEE/ST-B/safety-stock", {"safety_stock": 2})
    assert r.status_code == 200, r.json
    r = ops.post(
        "/api/v1/orders",
        {
            "channel": "web",
            "lines": [{"sku": "TEE", "qty": 3}],
            "delivery": {"type": "pickup", "location": "ST-A"},
        },
    )
    assert r.status_code == 201, r.json


def test_the_shop_shows_free_stock_less_the_buffer_per_location_and_a_second_run_pushes_nothing(
    app: Flask, shop: Callable[..., Shop], run: Run, ops: Api, receive: Callable[..., Any]
) -> None:
    s = shop()
    _stock(ops, receive)
    s.fake.set_available(s.items["CAP"], s.online, 50)  # the shop believes in stock we do not have
    first = run("shop")
    assert first["status"] == "succeeded", first
    # TEE: (10 - 3 reserved) - 1 at ST-A, (6 - 2 safety) - 1 at ST-B; CAP: 3 - 1 at ST-A, nothing at ST-B.
    assert (s.available("TEE"), s.available("CAP")) == (6 + 3, 2)
    assert first["counts"]["pushed"] == 2 and s.fake.applied == 2
    assert s.available("TEE", s.store) == 0, "a shop location the feed does not map is left alone"
    again = run("shop")
    assert again["status"] == "succeeded", again
    assert again["counts"].get("pushed", 0) == 0 and again["counts"]["unchanged"] == 2, again
    assert s.fake.applied == 2 and _mutations(s) == 2, "an unchanged level is not written"
    _verify(app)


def test_a_store_with_its_own_shop_location_is_not_also_sold_from_the_whole_channel(
    app: Flask, shop: Callable[..., Shop], run: Run, ops: Api, receive: Callable[..., Any]
) -> None:
    """The shop's store location shows ST-A; the web location then shows the rest of the channel,
    or the shop could sell ST-A's units twice."""
    s = shop(store_mapped=True)
    _stock(ops, receive)
    r = run("shop")
    assert r["status"] == "succeeded", r
    assert s.available("TEE", s.store) == 10 - 3 - 1
    assert s.available("TEE") == 6 - 2 - 1, "ST-A is sold through its own shop location only"
    assert (s.available("CAP", s.store), s.available("CAP")) == (2, 0)


def test_a_sale_between_our_read_and_our_write_is_taken_in_before_the_retry(
    app: Flask, shop: Callable[..., Shop], run: Run, ops: Api, receive: Callable[..., Any]
) -> None:
    s = shop()
    _stock(ops, receive)
    assert run("shop")["status"] == "succeeded"
    assert s.available("TEE") == 9 and s.fake.applied == 2
    receive(("TEE", "ST-A", 5))  # the ledger can sell 5 more: the next run raises the shop to 14
    sold: list[str] = []
    s.fake.before_mutation(
        lambda: sold.append(s.fake.place_order([(s.items["TEE"], 2)], location_gid=s.online)), nth=1
    )
    r = run("shop")
    assert r["status"] == "succeeded", r
    assert sold and r["counts"]["stale"] == 1, r
    assert r["counts"]["orders_placed"] == 1 and r["counts"]["pushed"] == 1, r
    assert s.available("TEE") == 14 - 2, "the retry carried the sale the shop made meanwhile"
    assert s.fake.applied == 3, "the stale write applied nothing; the retry applied once"
    assert _mutations(s) == 2 + 2
    number = sold[0].rsplit("/", 1)[-1]
    row = inbound(ops)[number]
    assert row["status"] == "placed", row
    order = ops.get(f"/api/v1/orders/{row['order_id']}").json
    assert (order["channel"], order["status"], order["external_id"]) == ("web", "allocated", number)
    assert sum(ln["qty"] for f in order["fulfilments"] for ln in f["lines"]) == 2
    again = run("shop")
    assert again["counts"].get("pushed", 0) == 0 and again["counts"].get("orders_placed", 0) == 0, again
    assert s.available("TEE") == 12 and s.fake.applied == 3
    _verify(app)


def test_shop_orders_become_routed_reserved_orders_of_channel_web_once_and_bad_ones_are_kept_refused(
    app: Flask, shop: Callable[..., Shop], run: Run, ops: Api, receive: Callable[..., Any]
) -> None:
    s = shop(store_mapped=True)
    receive(("TEE", "ST-A", 10), ("TEE", "ST-B", 6), ("CAP", "ST-A", 3))
    for sku in ("TEE", "CAP"):
        s.fake.set_available(s.items[sku], s.online, 20)
        s.fake.set_available(s.items[sku], s.store, 20)
    mug = s.fake.add_item("MUG", levels={s.online: 5})  # in the shop, not in the feed's items
    ship = s.fake.place_order([(s.items["TEE"], 2)], location_gid=s.online, lat=51.515, lon=-0.11)
    pickup = s.fake.place_order([(s.items["TEE"], 1)], location_gid=s.store, pickup=True)
    unmapped = s.fake.place_order([(mug, 1)], location_gid=s.online)
    too_many = s.fake.place_order([(s.items["CAP"], 4)], location_gid=s.online)
    num = {k: v.rsplit("/", 1)[-1] for k, v in
           {"ship": ship, "pickup": pickup, "unmapped": unmapped, "too_many": too_many}.items()}  # fmt: skip

    r = run("shop")
    assert r["status"] == "succeeded", r
    assert (r["counts"]["orders_placed"], r["counts"]["orders_refused"]) == (2, 2), r
    rows = inbound(ops)
    assert {k: rows[n]["status"] for k, n in num.items()} == {
        "ship": "placed", "pickup": "placed", "unmapped": "refused", "too_many": "refused"
    }  # fmt: skip
    assert "not mapped" in rows[num["unmapped"]]["reason"], rows[num["unmapped"]]
    assert rows[num["too_many"]]["reason"] and rows[num["too_many"]]["order_id"] is None
    refused = ops.get("/api/v1/sync/orders?feed=shop&status=refused").json["items"]
    assert {x["external_id"] for x in refused} == {num["unmapped"], num["too_many"]}

    shipped = ops.get(f"/api/v1/orders/{rows[num['ship']]['order_id']}").json
    assert (shipped["channel"], shipped["delivery"]["type"], shipped["status"]) == (
        "web",
        "ship",
        "allocated",
    )
    collected = ops.get(f"/api/v1/orders/{rows[num['pickup']]['order_id']}").json
    assert collected["delivery"] == {"type": "pickup", "location": "ST-A"}, collected
    assert [f["location"] for f in collected["fulfilments"]] == ["ST-A"]
    reserved = level(ops, "TEE", "ST-A")["reserved"] + level(ops, "TEE", "ST-B")["reserved"]
    assert reserved == 3, "both orders hold their units"
    assert level(ops, "CAP", "ST-A")["reserved"] == 0, "the refused order holds nothing"

    again = run("shop")
    assert again["status"] == "succeeded", again
    assert again["counts"].get("orders_placed", 0) == 0 and again["counts"]["orders_duplicate"] == 2, again
    assert again["counts"].get("orders_refused", 0) == 0 and again["counts"]["orders_still_refused"] == 2, (
        "a refusal is counted once per order; it is tried again since a mapping or stock may have come"
    )
    assert len(web_orders(ops)) == 2, "the shop's order id makes a second pull a no-op"
    assert level(ops, "TEE", "ST-A")["reserved"] + level(ops, "TEE", "ST-B")["reserved"] == 3
    assert inbound(ops)[num["too_many"]]["status"] == "refused"
    assert inbound(ops)[num["too_many"]]["attempts"] == 2
    _verify(app)


class _Clock:
    """A clock that moves only when the HTTP layer sleeps, so a pacing wait is not re-waited."""

    def __init__(self) -> None:
        self.now, self.slept = 1_000_000.0, Sleeps()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept(seconds)
        self.now += seconds


@pytest.mark.parametrize("status", [200, 429])
def test_throttled_is_waited_out_then_the_run_succeeds(
    app: Flask, shop: Callable[..., Shop], ops: Api, receive: Callable[..., Any], status: int
) -> None:
    s = shop()
    receive(("TEE", "ST-A", 4))
    s.fake.throttle_next(1, status=status, available=52.0)  # the orders query costs 352: (352-52)/100 s
    clock = _Clock()
    tools = runs.Tools(clock=clock, sleep=clock.sleep)
    r = run_feed(app.extensions["session_factory"], app.config, "shop", tools=tools)
    assert r["status"] == "succeeded", r
    # In a 200 the throttle hook waits 3 s; a 429's backoff is topped up to the same 3 s by pacing.
    assert sum(clock.slept) == pytest.approx(3.0), clock.slept
    assert s.available("TEE") == 3 and s.fake.applied == 1


def test_a_failed_run_is_recorded_with_its_reason_and_changes_nothing(
    app: Flask, shop: Callable[..., Shop], run: Run, ops: Api, receive: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    s = shop()
    receive(("TEE", "ST-A", 4))
    s.fake.place_order([(s.items["TEE"], 1)], location_gid=s.online)
    monkeypatch.setenv(SHOP_TOKEN_VAR, "shpat_revoked")
    r = run("shop")
    assert r["status"] == "failed" and "401" in r["error"], r
    runs = ops.get("/api/v1/sync/runs?feed=shop").json["items"]
    assert runs[0]["status"] == "failed" and "401" in runs[0]["error"], runs
    assert s.fake.applied == 0 and s.available("TEE") == -1
    assert web_orders(ops) == [] and inbound(ops) == {}
    assert level(ops, "TEE", "ST-A")["reserved"] == 0
    monkeypatch.delenv(SHOP_TOKEN_VAR)
    r = run("shop")
    assert r["status"] == "failed" and SHOP_TOKEN_VAR in r["error"], r
    monkeypatch.setenv(SHOP_TOKEN_VAR, s.fake.token)
    r = run("shop")
    assert r["status"] == "succeeded" and r["counts"]["orders_placed"] == 1, r
    assert s.available("TEE") == 4 - 1 - 1
