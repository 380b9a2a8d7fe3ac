"""Fixtures for the CSV and WooCommerce source tests: a file host, a stock-file builder, a CSV feed.

A test module imports the fixtures it names (pytest finds fixtures in its namespace).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.db import read_only, utcnow
from app.models import Movement
from app.models_sync import Discrepancy, Quarantine
from app.sync.fakes.csvfile import FakeCsvHost
from app.sync.fakes.woocommerce import FakeWoo
from tests.conftest import Api

FEED = "shopfile"
# The shop's stores as its POS export names them; "C" is a store the feed does not map.
STORES = {"A": "ST-A", "B": "ST-B"}
LOCATIONS = [
    {"code": "ST-A", "name": "A", "kind": "store", "lat": 51.51, "lon": -0.12, "channels": ["web"]},
    {"code": "ST-B", "name": "B", "kind": "store", "lat": 51.52, "lon": -0.10, "channels": ["web"]},
    {"code": "ST-C", "name": "C", "kind": "store", "lat": 51.53, "lon": -0.11, "channels": ["web"]},
]
SKUS = ["TEE", "CAP", "MUG"]


def stamp(when: datetime) -> str:
    return when.isoformat(timespec="microseconds")


def stock_file(rows: list[tuple[str, str, Any]], as_of: datetime | None = None) -> bytes:
    """The canonical file: sku,location,on_hand[,as_of]; as_of (our clock, microseconds) on each row."""
    head = "sku,location,on_hand" + (",as_of" if as_of else "")
    tail = f",{stamp(as_of)}" if as_of else ""
    return ("\n".join([head, *(f"{s},{loc},{q}{tail}" for s, loc, q in rows)]) + "\n").encode()


def exported_now() -> datetime:
    """A file's as_of: the moment of its export, after everything posted so far was recorded."""
    return utcnow() + timedelta(microseconds=1)


@pytest.fixture
def csv_host() -> Iterator[FakeCsvHost]:
    host = FakeCsvHost()
    host.start()
    yield host
    host.stop()


@pytest.fixture
def csv_feed(
    app: Flask, network: Callable[..., None], configure: Callable[..., None], csv_host: FakeCsvHost
) -> FakeCsvHost:
    """ST-A, ST-B (mapped as A, B) and ST-C (not mapped); TEE, CAP, MUG matched by SKU text.

    settle_s is 0: a POS export's as_of is exact, so anything recorded after it is "after the read"."""
    network(LOCATIONS, SKUS)
    configure(
        code=FEED, name="Shop stock file", role="source", connector="csv",
        base_url=csv_host.url + "/exports/stock.csv", locations=dict(STORES), match_items_by_sku=True,
        settings={"settle_s": 0, "auto_apply_limit": 5, "attempts": 2},
    )  # fmt: skip
    return csv_host


@pytest.fixture
def publish(csv_feed: FakeCsvHost) -> Callable[..., bytes]:
    """Put a stock file where the feed reads it: publish(rows, as_of=None) -> the bytes."""

    def _publish(rows: list[tuple[str, str, Any]], as_of: datetime | None = None) -> bytes:
        data = stock_file(rows, as_of or exported_now())
        csv_feed.put("/exports/stock.csv", data)
        return data

    return _publish


@pytest.fixture
def sell(ops: Api) -> Callable[[str, str, int], None]:
    """A till sale posted through our API (recorded on our clock now)."""

    def _sell(sku: str, location: str, qty: int) -> None:
        r = ops.post(
            "/api/v1/stock/movements",
            {"movements": [{"kind": "sale", "sku": sku, "location": location, "qty": qty}]},
        )
        assert r.status_code == 201, r.json

    return _sell


def ledger_state(app: Flask) -> dict[str, Any]:
    """What a refused run must leave alone: movements, quarantine and discrepancies."""
    with read_only(app.extensions["session_factory"]) as s:
        return {
            "movements": s.scalar(select(func.count()).select_from(Movement)),
            "quarantine": sorted(
                (q.kind, q.item_ref, q.location_ref, q.status, q.seen_count)
                for q in s.scalars(select(Quarantine))
            ),
            "discrepancies": sorted(
                (d.sku_id, d.location_id, d.status, d.drift) for d in s.scalars(select(Discrepancy))
            ),
        }


WOO_FEED = "woo"


@pytest.fixture
def woo() -> Iterator[FakeWoo]:
    shop = FakeWoo()
    shop.start()
    yield shop
    shop.stop()


@pytest.fixture
def woo_feed(
    app: Flask, network: Callable[..., None], configure: Callable[..., None], woo: FakeWoo,
    receive: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> FakeWoo:  # fmt: skip
    """A WooCommerce shop as the stock source of warehouse WH-1: TEE (10) is product 794, CAP (5) 795.

    The ledger starts in agreement; the shop's clock is then frozen 10 s ahead, past the settle window."""
    network(
        [{"code": "WH-1", "name": "WH", "kind": "warehouse", "lat": 51.5, "lon": -0.2, "pickup": False}], SKUS
    )
    receive(("TEE", "WH-1", 10), ("CAP", "WH-1", 5))
    tee, cap = woo.add_product("TEE", 10), woo.add_product("CAP", 5)
    monkeypatch.setenv("TEST_WOO_KEY", woo.key)
    monkeypatch.setenv("TEST_WOO_SECRET", woo.secret)
    configure(
        code=WOO_FEED, name="Woo warehouse stock", role="source", connector="woocommerce", base_url=woo.url,
        credentials={"key": "TEST_WOO_KEY", "secret": "TEST_WOO_SECRET"}, locations={"web": "WH-1"},
        items={str(tee): "TEE", str(cap): "CAP"}, settings={"settle_s": 2, "auto_apply_limit": 100, "attempts": 2},
    )  # fmt: skip
    woo.set_clock(utcnow() + timedelta(seconds=10), frozen=True)
    return woo
