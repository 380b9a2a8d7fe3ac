"""Shopify connector against the fake shop over real HTTP on 127.0.0.1 (sleep and clock injected)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from app.sync.base import (
    AuthError,
    AvailabilityUpdate,
    Capability,
    Connection,
    PushStatus,
    VendorRejected,
)
from app.sync.fakes.shopify import FakeShopify
from app.sync.shopify import ShopifyConnector, build, verify_webhook

T0 = datetime(2024, 1, 2, 13, 57, 24, tzinfo=UTC)
WAREHOUSE = "gid://shopify/Location/655441491"
STORE = "gid://shopify/Location/24826418"


@dataclass
class FakeTime:
    """A clock that moves only when the connector sleeps; the fake shop's clock moves with it."""

    shop: FakeShopify
    now: float = field(default_factory=time.time)
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.shop.advance(seconds)


@pytest.fixture
def shop() -> Iterator[FakeShopify]:
    fake = FakeShopify(now=T0)
    fake.set_clock(T0, frozen=True)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_time(shop: FakeShopify) -> FakeTime:
    return FakeTime(shop)


def connect(shop: FakeShopify, fake_time: FakeTime, **options: Any) -> ShopifyConnector:
    options.setdefault("location_refs", [WAREHOUSE, STORE])
    conn = Connection(
        base_url=shop.url,
        secrets={"token": shop.token},
        options=options,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    return build(conn)


def graphql_bodies(shop: FakeShopify) -> list[dict[str, Any]]:
    return [json.loads(j["body"]) for j in shop.calls("POST", "/admin/api/")]


def update(
    item: str, target: int, expected: int | None, key: str = "k-1", loc: str = WAREHOUSE
) -> AvailabilityUpdate:
    return AvailabilityUpdate(item, loc, target, expected, key, reference="gid://omnistock/SyncRun/42")


# ---------------------------------------------------------------- snapshot


def test_levels_page_through_two_locations_and_only_the_last_page_is_complete(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    a = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 42, STORE: 3})
    b = shop.add_item("IPOD2008BLUE", levels={WAREHOUSE: 0})
    c = shop.add_item("IPOD2008RED", levels={WAREHOUSE: 7})
    connector = connect(shop, fake_time, page_size=2)

    pages = list(connector.pull_snapshot())

    assert [len(p.observations) for p in pages] == [2, 1, 1]
    assert [p.complete for p in pages] == [False, False, True]
    assert all(p.vendor_time == T0 for p in pages)
    seen = {(o.item_ref, o.location_ref): o for p in pages for o in p.observations}
    assert {k: o.quantity for k, o in seen.items()} == {
        (a, WAREHOUSE): Decimal(42), (b, WAREHOUSE): Decimal(0), (c, WAREHOUSE): Decimal(7), (a, STORE): Decimal(3),
    }  # fmt: skip
    assert seen[(a, WAREHOUSE)].sku == "IPOD2008PINK"
    assert seen[(a, WAREHOUSE)].as_of == T0
    assert all(o.problem is None and o.tracked for o in seen.values())
    bodies = graphql_bodies(shop)
    assert [b["variables"]["loc"] for b in bodies] == [WAREHOUSE, WAREHOUSE, STORE]
    assert bodies[0]["variables"]["after"] is None and bodies[1]["variables"]["after"]
    assert bodies[2]["variables"]["after"] is None  # a new location starts from its first page
    assert shop.calls()[0]["headers"]["X-Shopify-Access-Token"] == shop.token
    assert shop.calls()[0]["path"] == "/admin/api/2026-04/graphql.json"


def test_untracked_unknown_quantity_name_and_missing_available(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    untracked = shop.add_item("GIFTCARD", tracked=False, levels={WAREHOUSE: 0})  # available: null
    counted = shop.add_item("POSTER", tracked=False, levels={WAREHOUSE: 0})
    shop.shape_level(counted, WAREHOUSE, extra={"available": 4})  # untracked, yet a number
    newer = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 5})
    broken = shop.add_item("IPOD2008BLUE", levels={WAREHOUSE: 5})
    shop.shape_level(newer, WAREHOUSE, extra={"quarantined_2027": 9})
    shop.shape_level(broken, WAREHOUSE, omit=["available"])

    pages = list(connect(shop, fake_time, location_refs=[WAREHOUSE]).pull_snapshot())

    seen = {o.item_ref: o for p in pages for o in p.observations}
    assert seen[untracked].tracked is False and seen[untracked].quantity is None
    assert seen[untracked].problem is None
    assert seen[counted].tracked is False and seen[counted].quantity is None and seen[counted].problem is None
    assert seen[newer].quantity == Decimal(5) and seen[newer].problem is None
    assert seen[broken].quantity is None and seen[broken].problem == "level carries no 'available' quantity"
    assert seen[broken].raw["item"]["id"] == broken
    assert pages[-1].complete


def test_unknown_location_and_wrong_token(shop: FakeShopify, fake_time: FakeTime) -> None:
    with pytest.raises(Exception, match="does not exist"):
        list(connect(shop, fake_time, location_refs=["gid://shopify/Location/1"]).pull_snapshot())
    conn = Connection(
        base_url=shop.url, secrets={"token": "shpat_wrong"}, options={"location_refs": [WAREHOUSE]}
    )
    with pytest.raises(AuthError):
        list(build(conn).pull_snapshot())


def test_other_graphql_errors_are_vendor_rejected(shop: FakeShopify, fake_time: FakeTime) -> None:
    shop.fault(method="POST", path="/admin/api/", status=200, body={
        "errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]})  # fmt: skip
    with pytest.raises(VendorRejected) as caught:
        list(connect(shop, fake_time).pull_snapshot())
    assert caught.value.code == "INTERNAL_SERVER_ERROR"
    assert fake_time.sleeps == []


# ---------------------------------------------------------------- push


def test_push_applied_with_cas_key_and_reference(shop: FakeShopify, fake_time: FakeTime) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 5})
    connector = connect(shop, fake_time)
    assert Capability.CAS in connector.capabilities and connector.name == "shopify"

    [result] = connector.push_available([update(item, 12, 5, key="3f0e7c5e-6b1e-4a7e-9f55-2f0d6c1b9a10")])

    assert result.status is PushStatus.APPLIED and result.key == "3f0e7c5e-6b1e-4a7e-9f55-2f0d6c1b9a10"
    assert result.vendor_time == T0
    assert shop.available(item, WAREHOUSE) == 12
    [body] = graphql_bodies(shop)
    assert "@idempotent(key: $key)" in body["query"]
    assert body["variables"]["key"] == "3f0e7c5e-6b1e-4a7e-9f55-2f0d6c1b9a10"
    assert body["variables"]["input"] == {
        "name": "available", "reason": "correction", "referenceDocumentUri": "gid://omnistock/SyncRun/42",
        "quantities": [{"inventoryItemId": item, "locationId": WAREHOUSE, "quantity": 12, "changeFromQuantity": 5}],
    }  # fmt: skip


def test_push_loses_cas_to_an_order_placed_between_read_and_write(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 5})
    other = shop.add_item("IPOD2008BLUE", levels={WAREHOUSE: 8})
    shop.before_mutation(lambda: shop.place_order([(item, 2)], location_gid=WAREHOUSE))

    results = connect(shop, fake_time).push_available([update(item, 4, 5, "k-a"), update(other, 6, 8, "k-b")])

    assert [r.status for r in results] == [PushStatus.STALE, PushStatus.APPLIED]
    assert results[0].actual_current == 3 and results[0].error_code == "CHANGE_FROM_QUANTITY_STALE"
    assert shop.available(item, WAREHOUSE) == 3  # the stale write was not applied
    assert shop.quantities(item, WAREHOUSE)["committed"] == 2
    assert shop.available(other, WAREHOUSE) == 6


def test_replaying_the_same_key_does_not_apply_twice(shop: FakeShopify, fake_time: FakeTime) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 10})
    connector = connect(shop, fake_time)
    first = connector.push_available([update(item, 7, 10, "k-same")])
    shop.set_available(item, WAREHOUSE, 9)  # a sale after our write

    again = connector.push_available([update(item, 7, 10, "k-same")])

    assert first[0].status is again[0].status is PushStatus.APPLIED
    assert shop.applied == 1
    assert shop.available(item, WAREHOUSE) == 9


def test_a_write_whose_answer_was_lost_is_resent_and_applied_once(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 10})
    shop.fault(method="POST", path="/admin/api/", action="drop_after")  # applied, then the line drops

    [result] = connect(shop, fake_time).push_available([update(item, 7, 10, "k-lost")])

    assert result.status is PushStatus.APPLIED  # the replayed first answer, not a CAS failure
    assert len(shop.calls("POST", "/admin/api/")) == 2 and len(fake_time.sleeps) == 1
    assert shop.applied == 1 and shop.available(item, WAREHOUSE) == 7


def test_same_key_with_other_input_is_rejected_with_the_vendor_code(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 10})
    connector = connect(shop, fake_time)
    connector.push_available([update(item, 7, 10, "k-same")])

    [result] = connector.push_available([update(item, 6, 7, "k-same")])

    assert result.status is PushStatus.REJECTED
    assert result.error_code == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    assert shop.available(item, WAREHOUSE) == 7


def test_2026_04_refuses_a_set_without_change_from_quantity_and_the_connector_always_sends_it(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 10})
    mutation = 'mutation S($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) @idempotent(key: "raw-1") { userErrors { code } } }'
    bare = {"name": "available", "reason": "correction",
            "quantities": [{"inventoryItemId": item, "locationId": WAREHOUSE, "quantity": 3}]}  # fmt: skip
    raw = requests.post(f"{shop.url}/admin/api/2026-04/graphql.json", timeout=5,
                        headers={"X-Shopify-Access-Token": shop.token},
                        json={"query": mutation, "variables": {"input": bare}}).json()  # fmt: skip
    assert raw["data"]["inventorySetQuantities"]["userErrors"][0]["field"][-1] == "changeFromQuantity"
    assert shop.available(item, WAREHOUSE) == 10

    [result] = connect(shop, fake_time).push_available([update(item, 3, None, "k-optout")])

    assert result.status is PushStatus.APPLIED and shop.available(item, WAREHOUSE) == 3
    sent = graphql_bodies(shop)[-1]["variables"]["input"]["quantities"][0]
    assert "changeFromQuantity" in sent and sent["changeFromQuantity"] is None  # the explicit opt-out


def test_2025_10_uses_compare_quantity(shop: FakeShopify, fake_time: FakeTime) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 10})
    connector = connect(shop, fake_time, api_version="2025-10")

    results = connector.push_available(
        [update(item, 4, 9, "k-1"), update(item, 4, 10, "k-2"), update(item, 2, None, "k-3")]
    )

    assert [r.status for r in results] == [PushStatus.STALE, PushStatus.APPLIED, PushStatus.APPLIED]
    assert results[0].error_code == "COMPARE_QUANTITY_STALE" and results[0].actual_current == 10
    bodies = [b for b in graphql_bodies(shop) if "inventorySetQuantities" in b["query"]]
    assert bodies[0]["variables"]["input"]["quantities"][0]["compareQuantity"] == 9
    assert bodies[2]["variables"]["input"]["ignoreCompareQuantity"] is True
    assert shop.calls()[0]["path"] == "/admin/api/2025-10/graphql.json"
    assert shop.available(item, WAREHOUSE) == 2


# ---------------------------------------------------------------- throttling


def test_throttled_in_a_200_waits_the_computed_seconds_then_succeeds(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 1})
    shop.throttle_next(1, status=200, available=52)  # (252 - 52) / 100 = 2 s

    pages = list(connect(shop, fake_time, location_refs=[WAREHOUSE]).pull_snapshot())

    assert fake_time.sleeps == [2.0]
    assert len(shop.calls("POST", "/admin/api/")) == 2
    assert pages[-1].complete and len(pages[-1].observations) == 1


def test_throttled_in_a_429_waits_the_computed_seconds_then_succeeds(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 1})
    shop.throttle_next(1, status=429, available=2)  # (252 - 2) / 100 -> 3 s, no Retry-After

    pages = list(connect(shop, fake_time, location_refs=[WAREHOUSE]).pull_snapshot())

    # The HTTP layer's short jittered backoff first, then what is left of the 3 s.
    assert sum(fake_time.sleeps) == pytest.approx(3.0)
    assert pages[-1].complete


def test_throttled_429_with_retry_after_waits_the_longer_of_the_two(
    shop: FakeShopify, fake_time: FakeTime
) -> None:
    shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 1})
    shop.throttle_next(1, status=429, available=52, retry_after="1.0")

    list(connect(shop, fake_time, location_refs=[WAREHOUSE]).pull_snapshot())

    assert fake_time.sleeps == [1.0, 1.0]


def test_pacing_waits_when_the_bucket_is_below_the_last_cost(shop: FakeShopify, fake_time: FakeTime) -> None:
    for n in range(3):
        shop.add_item(f"SKU-{n}", levels={WAREHOUSE: n})
    shop.set_bucket(260)  # 260 - 12 = 248 left after the first page, below its 252

    pages = list(connect(shop, fake_time, location_refs=[WAREHOUSE], page_size=2).pull_snapshot())

    assert fake_time.sleeps == [1.0]  # ceil((252 - 248) / 100)
    assert len(pages) == 2


# ---------------------------------------------------------------- orders


def test_orders_pull_pages_and_routes_pickup_and_ship(shop: FakeShopify, fake_time: FakeTime) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 10, STORE: 4})
    shop.place_order([(item, 1)], location_gid=WAREHOUSE)  # before `since`
    shop.advance(60)
    since = shop.now() - timedelta(seconds=1)
    shop.advance(1)
    ship = shop.place_order([(item, 2)], location_gid=WAREHOUSE, zip_code="K2P 1L4")
    shop.advance(1)
    pickup = shop.place_order([(item, 1)], location_gid=STORE, pickup=True, customer_id=None)
    shop.advance(1)
    broken = shop.place_order([(item, 1)], location_gid=WAREHOUSE)
    shop.orders[-1]["node"]["lineItems"]["nodes"][0]["quantity"] = "two"

    pages = list(connect(shop, fake_time, orders_page_size=2).pull_orders(since))

    assert [p.has_more for p in pages] == [True, False]
    orders = [o for p in pages for o in p.orders]
    assert [o.external_id for o in orders] == [g.rsplit("/", 1)[1] for g in (ship, pickup, broken)]
    first, second, third = orders
    assert first.delivery == {"type": "ship", "postcode": "K2P 1L4", "lat": 45.41634, "lon": -75.6868}
    assert (
        first.lines[0].qty == 2 and first.lines[0].item_ref == item and first.lines[0].sku == "IPOD2008PINK"
    )
    assert first.customer_ref == "115310627314723954" and first.problem is None
    assert first.created_at is not None and first.created_at.utcoffset() == timedelta(0)
    assert second.delivery == {"type": "pickup", "location_ref": STORE} and second.customer_ref is None
    assert third.problem is not None and "quantity 'two'" in third.problem and third.raw["id"] == broken
    assert shop.available(item, STORE) == 3  # placement moved available to committed
    assert graphql_bodies(shop)[0]["variables"]["query"] == f"updated_at:>'{since:%Y-%m-%dT%H:%M:%SZ}'"


def test_parse_order_of_the_webhook_payload(shop: FakeShopify, fake_time: FakeTime) -> None:
    item = shop.add_item("IPOD2008PINK", levels={WAREHOUSE: 10})
    order = shop.place_order([(item, 2)], location_gid=WAREHOUSE, zip_code="40003")
    _, body = shop.webhook_request("orders/create", shop.order_payload(order), "whsec")
    connector = connect(shop, fake_time)

    parsed = connector.parse_order(json.loads(body))

    assert parsed.external_id == order.rsplit("/", 1)[1] and parsed.problem is None
    assert (
        parsed.lines[0].qty == 2
        and parsed.lines[0].sku == "IPOD2008PINK"
        and parsed.lines[0].item_ref is None
    )
    assert parsed.delivery == {"type": "ship", "postcode": "40003", "lat": 45.41634, "lon": -75.6868}
    assert parsed.created_at == T0 and parsed.created_at.utcoffset() == timedelta(hours=-5)
    assert parsed.customer_ref == "115310627314723954"
    bad = connector.parse_order({"id": 820982911946154508, "line_items": [{"sku": "X", "quantity": None}]})
    assert bad.problem is not None and bad.raw["id"] == 820982911946154508


def test_verify_webhook_good_bad_and_rotated_secret(shop: FakeShopify) -> None:
    headers, body = shop.webhook_request("orders/create", {"id": 820982911946154508}, "new-secret",
                                         webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                                         triggered_at=T0 - timedelta(hours=3))  # fmt: skip
    signature = headers["X-Shopify-Hmac-Sha256"]
    assert headers["X-Shopify-Webhook-Id"] == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert headers["X-Shopify-Triggered-At"].startswith("2024-01-02T10:57:24")
    assert verify_webhook(["new-secret"], body, signature)
    assert verify_webhook(["old-secret", "new-secret"], body, signature)  # during rotation
    assert not verify_webhook(["old-secret"], body, signature)
    assert not verify_webhook(["new-secret"], body + b" ", signature)
    assert not verify_webhook(["new-secret"], body, None)
    assert not verify_webhook([], body, signature)
