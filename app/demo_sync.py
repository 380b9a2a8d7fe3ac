"""The demo's outside systems: a Square POS for three stores and a Shopify web shop, served by the
vendor fakes inside this process (under /demo-vendors/), with a few planted differences so the
first reconciliation has something to adjust, a discrepancy to review and an unknown item in
quarantine, and two web orders waiting to come in."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from app.db import transaction, utcnow
from app.models import Location, Sku, StockLevel
from app.schemas.sync import FeedIn
from app.services.sync import feeds

log = logging.getLogger(__name__)
STORES = {"L-COVENT": "ST-COVENT", "L-CAMDEN": "ST-CAMDEN", "L-SHOREDITCH": "ST-SHOREDITCH"}
UNKNOWN_VARIATION = "VAR-RETIRED-0001"
SHOP_STORE = "ST-COVENT"  # the web shop's click-and-collect store


def _levels(app: Flask) -> tuple[list[str], dict[tuple[str, str], int]]:
    def read(s: Any) -> tuple[list[str], dict[tuple[str, str], int]]:
        skus = list(s.scalars(select(Sku.code).where(Sku.active.is_(True)).order_by(Sku.code)))
        rows = s.execute(
            select(Sku.code, Location.code, StockLevel.on_hand)
            .join(Sku, Sku.id == StockLevel.sku_id)
            .join(Location, Location.id == StockLevel.location_id)
            .where(Location.code.in_(STORES.values()))
        )
        return skus, {(sku, loc): int(q) for sku, loc, q in rows}

    return transaction(app.extensions["session_factory"], read)


def start(app: Flask, base_url: str) -> dict[str, Any]:
    """Mount the fakes, seed them from the ledger with planted differences, configure the feeds."""
    from app.sync.fakes.shopify import FakeShopify
    from app.sync.fakes.square import FakeSquare

    skus, levels = _levels(app)
    if not skus:
        return {}
    square = FakeSquare(seed=False)
    shop = FakeShopify()
    now = square.now()
    square.set_clock(now - timedelta(hours=1))  # the POS history is an hour old
    planted: dict[tuple[str, str], int] = {}
    with_stock = sorted(k for k, q in levels.items() if q > 3)
    if len(with_stock) >= 3:
        planted = {with_stock[0]: +2, with_stock[len(with_stock) // 2]: -1, with_stock[-1]: +40}
    for (sku, loc), qty in sorted(levels.items()):
        ref = next(r for r, code in STORES.items() if code == loc)
        square.set_count(f"VAR-{sku}", ref, qty + planted.get((sku, loc), 0))
    square.set_count(UNKNOWN_VARIATION, "L-COVENT", 5)
    square.set_clock(now)
    online, store_gid = shop.location_gids[0], shop.location_gids[1]
    items = {sku: shop.add_item(sku, levels={online: 0, store_gid: 0}) for sku in skus}
    # Two web orders are waiting in the shop: one to ship, one to collect.
    first, second = skus[0], skus[min(5, len(skus) - 1)]
    shop.set_available(items[first], online, 5)
    shop.place_order([(items[first], 1)], location_gid=online, lat=51.515, lon=-0.13, zip_code="EC1A")
    shop.set_available(items[second], store_gid, 5)
    shop.place_order([(items[second], 1)], location_gid=store_gid, pickup=True)

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/demo-vendors/square": square.app, "/demo-vendors/shopify": shop.app}
    )
    os.environ.setdefault("OMNISTOCK_DEMO_SQUARE_TOKEN", square.token)
    os.environ.setdefault("OMNISTOCK_DEMO_SHOPIFY_TOKEN", shop.token)
    os.environ.setdefault("OMNISTOCK_DEMO_SHOPIFY_WEBHOOK_SECRET", "demo-shopify-webhook-secret")
    pos = FeedIn.model_validate(
        {
            "code": "pos-square", "name": "Store tills (Square, demo)", "role": "source", "connector": "square",
            "base_url": f"{base_url}/demo-vendors/square",
            "credentials": {"token": "OMNISTOCK_DEMO_SQUARE_TOKEN"},
            "locations": dict(STORES), "items": {f"VAR-{sku}": sku for sku in skus},
            "settings": {"every_s": 60, "settle_s": 5, "auto_apply_limit": 5},
        }
    )  # fmt: skip
    web = FeedIn.model_validate(
        {
            "code": "web-shopify", "name": "Web shop (Shopify, demo)", "role": "channel", "connector": "shopify",
            "base_url": f"{base_url}/demo-vendors/shopify", "channel": "web",
            "credentials": {"token": "OMNISTOCK_DEMO_SHOPIFY_TOKEN", "webhook_secret": "OMNISTOCK_DEMO_SHOPIFY_WEBHOOK_SECRET"},
            "locations": {online: None, store_gid: SHOP_STORE}, "items": {g: sku for sku, g in items.items()},
            "settings": {"push_every_s": 30, "safety_buffer": 1},
        }
    )  # fmt: skip
    transaction(app.extensions["session_factory"], lambda s: feeds.load_file(s, [pos, web]))
    log.info("demo vendors mounted", extra={"planted": len(planted), "skus": len(skus), "at": utcnow().isoformat()})
    app.extensions["demo_vendors"] = {"square": square, "shopify": shop}
    return {"square": square, "shopify": shop, "planted": planted}
