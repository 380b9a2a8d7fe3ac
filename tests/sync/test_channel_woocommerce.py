"""WooCommerce channel end to end over real HTTP: available-to-sell goes out in batches of at most
100, an item the shop refuses is reported while the rest are applied, and a batch whose answer was
lost is never sent again (Woo has no idempotency): the next run reads what the shop holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask

from app.sync.fakes.woocommerce import FakeWoo
from tests.sync.channel_fixtures import woo_feed_fixture, woo_fixture  # noqa: F401 - fixtures by name

BATCH = "/wp-json/wc/v3/products/batch"
SKUS = [f"W{i:03d}" for i in range(150)]
Run = Callable[..., dict[str, Any]]


def _target(i: int) -> int:
    return i % 5 + 1


def _stock_all(receive: Callable[..., Any]) -> None:
    # Split over both stores, so the shop-wide figure is the channel's sum.
    receive(*[(SKUS[i], "ST-A", _target(i) - 1) for i in range(150) if _target(i) > 1])
    receive(*[(SKUS[i], "ST-B", 1) for i in range(150)])


def _batches(woo: FakeWoo) -> list[list[dict[str, Any]]]:
    return [json.loads(c["body"])["update"] for c in woo.calls("POST", BATCH)]


def test_pushes_go_in_batches_of_100_and_a_refused_item_leaves_the_others_applied(
    app: Flask, woo: FakeWoo, woo_feed: Callable[..., dict[str, int]], run: Run, receive: Callable[..., Any]
) -> None:
    ids = woo_feed(SKUS)
    _stock_all(receive)
    gone = ids["W007"]
    woo.hooks.append(lambda method, path: woo.trash(gone) if (method, path) == ("POST", BATCH) else None)
    r = run("woo")
    assert r["status"] == "succeeded", r
    assert [len(b) for b in _batches(woo)] == [100, 50]
    assert r["counts"]["pushed"] == 149 and r["counts"]["push_rejected"] == 1, r
    (rejected,) = r["report"]["rejected"]
    assert (rejected["item_ref"], rejected["code"]) == (str(gone), "woocommerce_rest_product_invalid_id")
    assert all(woo.stock(ids[s]) == _target(i) for i, s in enumerate(SKUS) if s != "W007")
    woo.hooks.clear()
    again = run("woo")
    assert again["status"] == "succeeded", again
    assert again["counts"].get("pushed", 0) == 0 and again["counts"]["unchanged"] == 149, again
    assert len(_batches(woo)) == 2, "nothing differs, so nothing is written"


def test_a_batch_whose_answer_was_lost_is_not_resent_and_the_next_run_converges_from_the_shop(
    app: Flask, woo: FakeWoo, woo_feed: Callable[..., dict[str, int]], run: Run, receive: Callable[..., Any]
) -> None:
    ids = woo_feed(SKUS)
    _stock_all(receive)
    woo.fault(method="POST", path=BATCH, nth=1, action="drop_after")  # applied, then the line drops
    r = run("woo")
    assert r["status"] == "succeeded", r
    assert r["counts"]["push_failed"] == 100 and r["counts"]["pushed"] == 50, r
    assert [len(b) for b in _batches(woo)] == [100, 50], "the dropped batch was not sent again"
    assert all(woo.stock(ids[s]) == _target(i) for i, s in enumerate(SKUS)), "the shop did apply it"
    again = run("woo")
    assert again["status"] == "succeeded", again
    assert again["counts"].get("pushed", 0) == 0 and again["counts"]["unchanged"] == 150, again
    assert len(_batches(woo)) == 2, "the shop already holds the targets: nothing applied twice"
    receive(("W000", "ST-A", 4))
    third = run("woo")
    assert third["counts"]["pushed"] == 1 and _batches(woo)[-1] == [{"id": ids["W000"], "stock_quantity": 5}]


def test_the_shops_own_sales_since_our_last_push_are_not_overwritten(
    app: Flask, woo: FakeWoo, woo_feed: Callable[..., dict[str, int]], run: Run, receive: Callable[..., Any]
) -> None:
    """Woo has no CAS and we do not take its orders: a lower figure after our push is its own sales."""
    ids = woo_feed(SKUS[:3])
    receive(*[(s, "ST-A", 5) for s in SKUS[:3]])
    assert run("woo")["counts"]["pushed"] == 3
    woo.sell(ids["W001"], 2)  # the shop sold two of our five
    r = run("woo")
    assert r["counts"].get("pushed", 0) == 0 and r["counts"]["shop_lower_kept"] == 1, r
    assert woo.stock(ids["W001"]) == 3, "putting 5 back would sell the shop's two again"
    receive(("W001", "ST-A", 1))  # the ledger moved: a new figure goes out
    r = run("woo")
    assert r["counts"]["pushed"] == 1 and woo.stock(ids["W001"]) == 6, r
    woo.set_stock(ids["W002"], 9)  # someone raised it in the shop: above what we can sell, so corrected
    r = run("woo")
    assert r["counts"]["pushed"] == 1 and woo.stock(ids["W002"]) == 5, r
