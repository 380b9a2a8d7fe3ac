"""The WooCommerce connector against the fake shop over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests

from app.sync.base import (
    AuthError,
    AvailabilityUpdate,
    Capability,
    Connection,
    IncompleteSnapshot,
    Observation,
    PushStatus,
    SnapshotPage,
    SyncError,
)
from app.sync.fakes.woocommerce import API, FakeWoo
from app.sync.woocommerce import WooConnector, build, verify_webhook

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
KEY, SECRET = "ck_live_1", "cs_live_1"


@pytest.fixture
def shop() -> Iterator[FakeWoo]:
    fake = FakeWoo(key=KEY, secret=SECRET, now=NOW)
    fake.frozen = True
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def waits() -> list[float]:
    return []


def connect(shop: FakeWoo, waits: list[float] | None = None, **options: Any) -> WooConnector:
    sleeps = waits if waits is not None else []
    conn = Connection(
        base_url=shop.url, secrets={"key": KEY, "secret": SECRET}, options=options, sleep=sleeps.append
    )
    return build(conn)


def snapshot(connector: WooConnector) -> list[SnapshotPage]:
    return list(connector.pull_snapshot())


def drain(connector: WooConnector, into: list[SnapshotPage]) -> None:
    """Keep every page read before the snapshot gave up."""
    for page in connector.pull_snapshot():
        into.append(page)


def observations(pages: list[SnapshotPage]) -> dict[str, Observation]:
    out: dict[str, Observation] = {}
    for page in pages:
        for o in page.observations:
            assert o.item_ref not in out, f"{o.item_ref} seen twice"
            out[o.item_ref] = o
    return out


def update(ref: str, target: int, key: str | None = None) -> AvailabilityUpdate:
    return AvailabilityUpdate(ref, "web", target, None, key or f"k-{ref}")


def product_gets(shop: FakeWoo) -> list[dict[str, Any]]:
    return [c for c in shop.calls("GET", f"{API}/products") if "/variations" not in c["path"]]


def test_capabilities_say_snapshot_push_and_two_strike(shop: FakeWoo) -> None:
    c = connect(shop)
    assert c.name == "woocommerce"
    assert c.capabilities == {Capability.SNAPSHOT, Capability.PUSH_AVAILABLE, Capability.TWO_STRIKE}
    with pytest.raises(SyncError):
        list(c.pull_orders(None))


def test_paging_follows_the_shop_totals_and_is_complete_on_the_last_page(shop: FakeWoo) -> None:
    ids = [shop.add_product(f"SKU-{i}", i) for i in range(250)]
    pages = snapshot(connect(shop))
    assert [len(p.observations) for p in pages] == [100, 100, 50]
    assert [p.complete for p in pages] == [False, False, True]
    assert all(p.vendor_time == NOW for p in pages)
    seen = observations(pages)
    assert list(seen) == [str(i) for i in ids]
    o = seen[str(ids[7])]
    assert (o.location_ref, o.quantity, o.sku, o.tracked, o.problem) == (
        "web",
        Decimal(7),
        "SKU-7",
        True,
        None,
    )
    assert o.as_of == NOW.replace(second=0, minute=30)
    queries = [c["query"] for c in product_gets(shop)]
    assert queries == [f"per_page=100&page={n}&orderby=id&order=asc" for n in (1, 2, 3)]


def test_as_of_is_date_modified_gmt_as_utc_not_the_site_time(shop: FakeWoo) -> None:
    shop.add_product("A", 1, modified=datetime(2024, 3, 1, 10, 15, 22, tzinfo=timezone(timedelta(hours=1))))
    [page] = snapshot(connect(shop))
    assert page.observations[0].as_of == datetime(2024, 3, 1, 9, 15, 22, tzinfo=UTC)


def test_a_product_restored_mid_paging_is_deduped_and_the_snapshot_incomplete(shop: FakeWoo) -> None:
    ids = [shop.add_product(f"SKU-{i}", 1) for i in range(1, 250)]
    # A trashed product comes back (its low id returns) after page 1: rows shift by one.
    shop.on_page(1, lambda: shop.add_product("RESTORED", 5, id=ids[0] - 1))
    pages: list[SnapshotPage] = []
    with pytest.raises(IncompleteSnapshot) as info:
        drain(connect(shop), pages)
    seen = observations(pages)  # the shifted duplicate was dropped, not counted twice
    assert set(seen) == {str(i) for i in ids}
    assert not any(p.complete for p in pages)
    assert "moved" in info.value.message and "shifted" in info.value.message


def test_a_product_deleted_mid_paging_leaves_a_gap_so_incomplete(shop: FakeWoo) -> None:
    ids = [shop.add_product(f"SKU-{i}", 1) for i in range(250)]
    shop.on_page(1, lambda: shop.trash(ids[0]))  # row 101 moves onto page 1: never seen
    with pytest.raises(IncompleteSnapshot):
        snapshot(connect(shop))


def test_a_page_short_before_the_end_is_incomplete(shop: FakeWoo) -> None:
    for i in range(250):
        shop.add_product(f"SKU-{i}", 1)
    shop.fault(
        method="GET", path=f"{API}/products", nth=2, status=200, body="[]",
        headers={"X-WP-Total": "250", "X-WP-TotalPages": "3"},
    )  # fmt: skip
    with pytest.raises(IncompleteSnapshot) as info:
        snapshot(connect(shop))
    assert "100 distinct rows seen of the 250" in info.value.message


def test_without_totals_a_400_past_the_end_is_end_of_data(shop: FakeWoo) -> None:
    for i in range(200):
        shop.add_product(f"SKU-{i}", 1)
    shop.send_totals, shop.past_end = False, "400"
    pages = snapshot(connect(shop))
    assert sum(len(p.observations) for p in pages) == 200 and pages[-1].complete
    assert len(product_gets(shop)) == 3


def test_an_empty_shop_is_one_complete_empty_page(shop: FakeWoo) -> None:
    [page] = snapshot(connect(shop))
    assert page.complete and page.observations == []


def test_variations_own_rows_and_parent_stock(shop: FakeWoo) -> None:
    pid, (v_own, v_parent, v_untracked) = shop.add_variable(
        "TEE", [("TEE-S", 4), ("TEE-M", "parent"), ("TEE-L", None)], stock=9
    )
    seen = observations(snapshot(connect(shop)))
    assert set(seen) == {str(pid), f"{pid}:{v_own}", f"{pid}:{v_untracked}"}
    assert seen[str(pid)].quantity == Decimal(9)  # TEE-M sells from this pool: no row of its own
    assert (seen[f"{pid}:{v_own}"].quantity, seen[f"{pid}:{v_own}"].sku) == (Decimal(4), "TEE-S")
    untracked = seen[f"{pid}:{v_untracked}"]
    assert (untracked.tracked, untracked.quantity, untracked.problem) == (False, None, None)
    shop.sell(v_parent, 2)
    assert shop.stock(pid) == 7


def test_variations_are_paged_too(shop: FakeWoo) -> None:
    pid, vids = shop.add_variable("BIG", [(f"BIG-{i}", i) for i in range(130)])
    seen = observations(snapshot(connect(shop)))
    assert {f"{pid}:{v}" for v in vids} <= set(seen)
    assert len(shop.calls("GET", f"{API}/products/{pid}/variations")) == 2


def test_untracked_product_has_no_quantity_and_no_problem(shop: FakeWoo) -> None:
    pid = shop.add_product("GIFT-CARD", None)
    [o] = snapshot(connect(shop))[0].observations
    assert (o.item_ref, o.tracked, o.quantity, o.problem) == (str(pid), False, None, None)


def test_negative_stock_with_backorders_is_kept(shop: FakeWoo) -> None:
    shop.add_product("PRE-ORDER", -3, backorders="notify")
    [o] = snapshot(connect(shop))[0].observations
    assert o.quantity == Decimal(-3) and o.problem is None


@pytest.mark.parametrize("garbage", ["lots", 2.5, True])
def test_garbage_stock_quantity_is_a_problem_row_with_raw(shop: FakeWoo, garbage: object) -> None:
    pid = shop.add_product("ODD", 1)
    shop.products[pid]["stock_quantity"] = garbage
    [o] = snapshot(connect(shop))[0].observations
    assert o.quantity is None and o.problem and o.raw["id"] == pid


def test_per_page_option_is_capped_at_100_and_the_fake_refuses_more(shop: FakeWoo) -> None:
    shop.add_product("A", 1)
    snapshot(connect(shop, per_page=500))
    assert "per_page=100" in product_gets(shop)[0]["query"]
    resp = requests.get(f"{shop.url}{API}/products", params={"per_page": 101}, auth=(KEY, SECRET), timeout=5)
    assert resp.status_code == 400 and resp.json()["code"] == "rest_invalid_param"


def test_default_order_of_the_fake_is_date_desc(shop: FakeWoo) -> None:
    a = shop.add_product("OLD", 1, created=datetime(2024, 1, 1, tzinfo=UTC))
    b = shop.add_product("NEW", 1, created=datetime(2025, 1, 1, tzinfo=UTC))
    resp = requests.get(f"{shop.url}{API}/products", auth=(KEY, SECRET), timeout=5)
    assert [r["id"] for r in resp.json()] == [b, a]
    assert resp.headers["X-WP-Total"] == "2" and "date_modified_gmt" in resp.json()[0]


def test_wrong_keys_are_an_auth_error(shop: FakeWoo) -> None:
    conn = Connection(base_url=shop.url, secrets={"key": KEY, "secret": "cs_wrong"}, sleep=lambda s: None)
    with pytest.raises(AuthError):
        snapshot(build(conn))
    assert shop.calls()[0]["headers"]["Authorization"].startswith("Basic ")


def test_query_param_auth_when_the_host_strips_authorization(shop: FakeWoo) -> None:
    shop.add_product("A", 1)
    [page] = snapshot(connect(shop, auth="query"))
    assert len(page.observations) == 1
    call = shop.calls()[0]
    assert "Authorization" not in call["headers"] and f"consumer_key={KEY}" in call["query"]


def test_html_maintenance_page_then_success(shop: FakeWoo, waits: list[float]) -> None:
    shop.add_product("A", 1)
    shop.fault(method="GET", path=f"{API}/products", action="html")
    [page] = snapshot(connect(shop, waits))
    assert page.complete and len(page.observations) == 1
    assert len(waits) == 1 and len(product_gets(shop)) == 2


def test_push_250_updates_goes_in_three_batches_of_at_most_100(shop: FakeWoo) -> None:
    ids = [shop.add_product(f"SKU-{i}", 0) for i in range(250)]
    results = connect(shop).push_available([update(str(i), n) for n, i in enumerate(ids)])
    assert [r.status for r in results] == [PushStatus.APPLIED] * 250
    assert (
        results[5].key == f"k-{ids[5]}" and results[5].vendor_time == NOW and results[5].actual_current == 5
    )
    sizes = [len(json.loads(c["body"])["update"]) for c in shop.calls("POST", f"{API}/products/batch")]
    assert sizes == [100, 100, 50]
    assert [shop.stock(i) for i in ids[:3]] == [0, 1, 2] and shop.stock(ids[-1]) == 249


def test_per_item_error_rejects_that_item_and_applies_the_others(shop: FakeWoo) -> None:
    a, b, c = (shop.add_product(s, 1) for s in "ABC")
    shop.trash(b)
    results = connect(shop).push_available([update(str(a), 5), update(str(b), 6), update(str(c), 7)])
    assert [r.status for r in results] == [PushStatus.APPLIED, PushStatus.REJECTED, PushStatus.APPLIED]
    assert results[1].error_code == "woocommerce_rest_product_invalid_id"
    assert (shop.stock(a), shop.stock(c)) == (5, 7)


def test_413_halves_the_batch_until_the_shop_takes_it(shop: FakeWoo) -> None:
    shop.limit = 30
    ids = [shop.add_product(f"SKU-{i}", 0) for i in range(100)]
    results = connect(shop).push_available([update(str(i), 3) for i in ids])
    assert all(r.status is PushStatus.APPLIED for r in results)
    sizes = [len(json.loads(c["body"])["update"]) for c in shop.calls("POST", f"{API}/products/batch")]
    assert sizes == [100, 50, 25, 25, 50, 25, 25]
    assert all(shop.stock(i) == 3 for i in ids)


def test_variations_are_written_under_their_parent(shop: FakeWoo) -> None:
    pid, (v1, v2) = shop.add_variable("TEE", [("TEE-S", 1), ("TEE-M", 1)])
    simple = shop.add_product("MUG", 1)
    results = connect(shop).push_available(
        [update(f"{pid}:{v1}", 8), update(str(simple), 2), update(f"{pid}:{v2}", 9)]
    )
    assert [r.status for r in results] == [PushStatus.APPLIED] * 3
    assert (shop.stock(v1), shop.stock(v2), shop.stock(simple)) == (8, 9, 2)
    [call] = shop.calls("POST", f"{API}/products/{pid}/variations/batch")
    assert json.loads(call["body"]) == {
        "update": [{"id": v1, "stock_quantity": 8}, {"id": v2, "stock_quantity": 9}]
    }


def test_bad_refs_and_other_locations_are_rejected_without_a_call(shop: FakeWoo) -> None:
    results = connect(shop).push_available(
        [update("abc", 1), AvailabilityUpdate("5", "ST-A", 1, None, "k"), update("5:x", 1)]
    )
    assert [r.error_code for r in results] == ["invalid_item_ref", "unknown_location", "invalid_item_ref"]
    assert shop.calls("POST") == []


def test_a_write_is_not_resent_after_a_dropped_connection(shop: FakeWoo) -> None:
    pid = shop.add_product("A", 1)
    shop.fault(method="POST", path=f"{API}/products/batch", action="drop_after")
    [result] = connect(shop).push_available([update(str(pid), 4)])
    assert result.status is PushStatus.RETRYABLE
    assert len(shop.calls("POST")) == 1 and shop.stock(pid) == 4  # it landed; the lead re-reads


def test_push_only_sends_what_is_given(shop: FakeWoo) -> None:
    assert connect(shop).push_available([]) == []
    assert shop.calls() == []


def test_a_sale_does_not_bump_date_modified_but_a_write_does(shop: FakeWoo) -> None:
    pid = shop.add_product("A", 5, modified=datetime(2024, 1, 1, tzinfo=UTC))
    shop.sell(pid, 2)
    [o] = snapshot(connect(shop))[0].observations
    assert o.quantity == Decimal(3) and o.as_of == datetime(2024, 1, 1, tzinfo=UTC)
    connect(shop).push_available([update(str(pid), 9)])
    assert shop.products[pid]["modified"] == NOW.replace(tzinfo=None)


def test_verify_webhook_signature() -> None:
    body = b'{"id": 794}'
    good = base64.b64encode(hmac.new(b"whsec", body, hashlib.sha256).digest()).decode()
    assert verify_webhook("whsec", body, good)
    assert not verify_webhook("whsec", body + b" ", good)
    assert not verify_webhook("other", body, good) and not verify_webhook("whsec", body, None)


def test_missing_secrets_are_an_auth_error() -> None:
    with pytest.raises(AuthError):
        build(Connection(base_url="http://127.0.0.1:9", secrets={"key": KEY}))
