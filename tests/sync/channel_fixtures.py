"""Channel test helpers: a Shopify shop and a WooCommerce shop over their fakes, feeds configured on
channel web (ST-A and ST-B), and reads of what the service made of the shop's orders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.sync.fakes.shopify import FakeShopify
from app.sync.fakes.woocommerce import FakeWoo
from tests.conftest import Api

SHOP_TOKEN_VAR = "TEST_SHOPIFY_TOKEN"
SHOP_SECRET_VAR = "TEST_SHOPIFY_WEBHOOK_SECRET"
SHOP_SECRET = "shopify-webhook-secret-0123456789"
WOO_KEY_VAR, WOO_SECRET_VAR = "TEST_WOO_KEY", "TEST_WOO_SECRET"
STORES = [
    {"code": "ST-A", "name": "A", "kind": "store", "lat": 51.51, "lon": -0.12, "channels": ["web"]},
    {"code": "ST-B", "name": "B", "kind": "store", "lat": 51.52, "lon": -0.10, "channels": ["web"]},
]


@dataclass
class Shop:
    """The fake shop and what a test needs to name in it."""

    fake: FakeShopify
    online: str  # the shop's web location gid (mapped to null: the channel's whole stock)
    store: str  # the shop's ST-A location gid (mapped to ST-A only when a test asks)
    items: dict[str, str] = field(default_factory=dict)  # SKU code -> InventoryItem gid

    def available(self, sku: str, location: str | None = None) -> int | None:
        return self.fake.available(self.items[sku], location or self.online)


@pytest.fixture(name="shopify")
def shopify_fixture() -> Iterator[FakeShopify]:
    fake = FakeShopify()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(name="shop")
def shop_fixture(
    network: Callable[..., None],
    shopify: FakeShopify,
    configure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Shop]:
    """shop(store=False, **settings): TEE and CAP at both shop locations (available 0), the feed
    `shop` on channel web with safety_buffer 1; store=True also maps the shop's store to ST-A."""
    network(STORES, ["TEE", "CAP", "MUG"])
    monkeypatch.setenv(SHOP_TOKEN_VAR, shopify.token)
    monkeypatch.setenv(SHOP_SECRET_VAR, SHOP_SECRET)
    online, store = shopify.location_gids
    items = {sku: shopify.add_item(sku, levels={online: 0, store: 0}) for sku in ("TEE", "CAP")}

    def _shop(store_mapped: bool = False, **settings: Any) -> Shop:
        locations: dict[str, str | None] = {online: None}
        if store_mapped:
            locations[store] = "ST-A"
        configure(
            code="shop", name="Web shop", role="channel", connector="shopify", base_url=shopify.url,
            channel="web", credentials={"token": SHOP_TOKEN_VAR, "webhook_secret": SHOP_SECRET_VAR},
            locations=locations, items={g: sku for sku, g in items.items()},
            settings={"safety_buffer": 1, "overlap_s": 600, "attempts": 3, **settings},
        )  # fmt: skip
        return Shop(shopify, online, store, items)

    return _shop


@pytest.fixture(name="woo")
def woo_fixture() -> Iterator[FakeWoo]:
    fake = FakeWoo()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(name="woo_feed")
def woo_feed_fixture(
    network: Callable[..., None],
    woo: FakeWoo,
    configure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., dict[str, int]]:
    """woo_feed(skus): one Woo product per SKU (stock 0), the feed `woo` on channel web, whole stock;
    returns SKU code -> product id."""

    def _woo_feed(skus: list[str], **settings: Any) -> dict[str, int]:
        network(STORES, skus)
        monkeypatch.setenv(WOO_KEY_VAR, woo.key)
        monkeypatch.setenv(WOO_SECRET_VAR, woo.secret)
        ids = {sku: woo.add_product(sku, 0) for sku in skus}
        configure(
            code="woo", name="Woo shop", role="channel", connector="woocommerce", base_url=woo.url,
            channel="web", credentials={"key": WOO_KEY_VAR, "secret": WOO_SECRET_VAR},
            locations={"web": None}, items={str(pid): sku for sku, pid in ids.items()},
            settings={"safety_buffer": 0, "attempts": 3, **settings},
        )  # fmt: skip
        return ids

    return _woo_feed


def inbound(ops: Api, feed: str = "shop") -> dict[str, dict[str, Any]]:
    """GET /api/v1/sync/orders of one feed, by the shop's order id."""
    r = ops.get(f"/api/v1/sync/orders?feed={feed}")
    assert r.status_code == 200, r.json
    return {row["external_id"]: row for row in r.json["items"]}


def web_orders(ops: Api) -> list[dict[str, Any]]:
    r = ops.get("/api/v1/orders?channel=web")
    assert r.status_code == 200, r.json
    return list(r.json["items"])


def level(ops: Api, sku: str, location: str) -> dict[str, Any]:
    """The ledger's level of one SKU at one location, as the stock API answers it."""
    r = ops.get(f"/api/v1/stock/levels?sku={sku}&location={location}")
    assert r.status_code == 200, r.json
    (level,) = r.json["items"]
    return dict(level)
